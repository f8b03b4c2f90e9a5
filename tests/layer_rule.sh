#!/bin/sh
# The layer rule of cmake/layers.cmake, tested: builds each probe target
# and checks that the first (a lower layer's header) compiles and every
# other (a higher layer's header) fails because the header is not found.
#   tests/layer_rule.sh CMAKE BUILD_DIR probe:header ...
cmake=$1 build=$2
shift 2
first=1
for probe in "$@"; do
    name=${probe%%:*} header=${probe#*:}
    out=$("$cmake" --build "$build" --target "$name" 2>&1)
    status=$?
    if [ $first = 1 ]; then
        [ $status = 0 ] || { echo "$name: a lower layer's $header does not compile:"; echo "$out"; exit 1; }
        echo "$name: $header compiles (a lower layer)"
        first=0
        continue
    fi
    if [ $status = 0 ]; then
        echo "$name: $header compiled, but it belongs to a higher layer"; exit 1
    fi
    echo "$out" | grep -q "$header: No such file" ||
        { echo "$name: failed, but not because $header is out of reach:"; echo "$out"; exit 1; }
    echo "$name: refused, $header: No such file"
done
