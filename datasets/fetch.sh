#!/bin/sh
# Downloads a dataset from its official source into DIR, checks the MD5 its
# publishers give (the same checksums torchvision uses), and unpacks it into
# the layout clgqa reads. Afterwards set `data_dir: DIR` in the config.
#
#   datasets/fetch.sh NAME DIR
#
# NAME: mnist, fashion-mnist, cifar10, cifar100, tiny-imagenet-200, food101,
# oxfordiiitpet, cinic10. Needs curl (or wget), md5sum, tar, and unzip for Tiny ImageNet.
# Archives are deleted once unpacked; a failed checksum stops with an error
# and leaves the download in DIR for inspection.
set -eu

usage() {
    echo "usage: $0 NAME DIR" >&2
    echo "NAME: mnist fashion-mnist cifar10 cifar100 tiny-imagenet-200 food101 oxfordiiitpet cinic10" >&2
    exit 2
}
[ $# -eq 2 ] || usage
name=$1
dir=$2
mkdir -p "$dir"

download() { # URL FILE
    echo "fetch.sh: downloading $1"
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -O "$2" "$1"
    else
        echo "fetch.sh: needs curl or wget" >&2
        exit 1
    fi
}

verify() { # FILE MD5
    if ! echo "$2  $1" | md5sum -c --quiet -; then
        echo "fetch.sh: $1 does not have the published MD5 $2 (corrupt or changed download)" >&2
        exit 1
    fi
}

fetch() { # URL MD5: download into DIR (unless already verified) and check
    file="$dir/${1##*/}"
    if [ -f "$file" ] && echo "$2  $file" | md5sum -c --quiet - >/dev/null 2>&1; then
        echo "fetch.sh: $file already downloaded"
    else
        download "$1" "$file"
        verify "$file" "$2"
    fi
}

untar() { # URL MD5 [FOLDER]: unpack into DIR, or into DIR/FOLDER
    fetch "$1" "$2"
    mkdir -p "$dir/${3:-.}"
    tar -xzf "$file" -C "$dir/${3:-.}"
    rm -f "$file"
}

case "$name" in
mnist) # IDX files, read gzipped as they are
    base=https://ossci-datasets.s3.amazonaws.com/mnist
    fetch $base/train-images-idx3-ubyte.gz f68b3c2dcbeaaa9fbdd348bbdeb94873
    fetch $base/train-labels-idx1-ubyte.gz d53e105ee54ea40749a09fcbcd1e9432
    fetch $base/t10k-images-idx3-ubyte.gz 9fb629c4189551a2d022fa330f9573f3
    fetch $base/t10k-labels-idx1-ubyte.gz ec29112dd5afa0611ce80d1b7f02629c
    ;;
fashion-mnist)
    base=http://fashion-mnist.s3-website.eu-central-1.amazonaws.com
    fetch $base/train-images-idx3-ubyte.gz 8d4fb7e6c68d591d4c3dfef9ec88bf0d
    fetch $base/train-labels-idx1-ubyte.gz 25c81989df183df01b3e8a0aad5dffbe
    fetch $base/t10k-images-idx3-ubyte.gz bef4ecab320f06d8554ea6380940ec79
    fetch $base/t10k-labels-idx1-ubyte.gz bb300cfdad3c16e7a12a480ee83cd310
    ;;
cifar10) # unpacks to DIR/cifar-10-batches-bin
    untar https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz c32a1d4ab5d03f1284b67883e8d87530
    ;;
cifar100) # unpacks to DIR/cifar-100-binary
    untar https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz 03b5dce01913d631647c71ecec9e9cb8
    ;;
tiny-imagenet-200) # unpacks to DIR/tiny-imagenet-200
    fetch http://cs231n.stanford.edu/tiny-imagenet-200.zip 90528d7ca1a48142e341f4ef8d21d0de
    unzip -q "$file" -d "$dir"
    rm -f "$file"
    ;;
food101) # 5 GB; unpacks to DIR/food-101
    untar http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz 85eeb15f3717b99a5da872d97d918f87
    ;;
oxfordiiitpet) # 800 MB; unpacks to DIR/oxford-iiit-pet/{images,annotations}, as torchvision
    base=https://www.robots.ox.ac.uk/~vgg/data/pets/data
    untar $base/images.tar.gz 5c4f3ee8e5d25df40f4fd59a7f44e54c oxford-iiit-pet
    untar $base/annotations.tar.gz 95a8c909bbe2e81eed6a22bccdf3f68f oxford-iiit-pet
    ;;
cinic10) # unpacks to DIR/train, DIR/valid, DIR/test
    untar https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz \
        6ee4d0c996905fe93221de577967a372
    ;;
*)
    usage
    ;;
esac
echo "fetch.sh: $name is ready: set data_dir: $dir"
