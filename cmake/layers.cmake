# The library's layers and the rule between them (docs/design.md, "Layers"):
# a layer includes its own headers and those of the layers before it in
# CLGQA_LAYERS, never those of a layer after it.
#
# Each layer is an object library over src/<layer>/*.c whose include path
# holds src/<layer> and the folders of the layers before it, and a folder of
# its own under the build tree with links to the public headers
# (include/clgqa/) of those layers only. So an include of a higher layer's
# header, private or public, fails to compile.
set(CLGQA_LAYERS base runtime ops model io data train)

# The public headers, by the layer that implements them. Every header of
# include/clgqa/ must be listed once.
set(CLGQA_PUBLIC_base error.h)
set(CLGQA_PUBLIC_runtime runtime.h)
set(CLGQA_PUBLIC_ops)
set(CLGQA_PUBLIC_model model.h)
set(CLGQA_PUBLIC_io checkpoint.h)
set(CLGQA_PUBLIC_data dataset.h)
set(CLGQA_PUBLIC_train config.h train.h)

file(GLOB clgqa_public_headers RELATIVE ${CMAKE_SOURCE_DIR}/include/clgqa
  CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/include/clgqa/*.h)
set(clgqa_listed "")
foreach(layer ${CLGQA_LAYERS})
  list(APPEND clgqa_listed ${CLGQA_PUBLIC_${layer}})
endforeach()
foreach(header ${clgqa_public_headers})
  if(NOT header IN_LIST clgqa_listed)
    message(FATAL_ERROR "include/clgqa/${header} belongs to no layer: add it to cmake/layers.cmake")
  endif()
endforeach()

# Every layer's folder, for the program and the tests, which see all of them.
set(CLGQA_ALL_LAYER_DIRS "")
foreach(layer ${CLGQA_LAYERS})
  list(APPEND CLGQA_ALL_LAYER_DIRS ${CMAKE_SOURCE_DIR}/src/${layer})
endforeach()

set(clgqa_below_dirs "")    # the folders of the layers added so far
set(clgqa_below_public "")  # their public headers
macro(clgqa_add_layer layer)
  file(GLOB clgqa_layer_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/${layer}/*.c)
  add_library(clgqa_${layer} OBJECT ${clgqa_layer_sources} ${ARGN})
  set_target_properties(clgqa_${layer} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  list(APPEND clgqa_below_public ${CLGQA_PUBLIC_${layer}})
  set(clgqa_public_dir ${CMAKE_BINARY_DIR}/layers/${layer})
  file(REMOVE_RECURSE ${clgqa_public_dir})
  file(MAKE_DIRECTORY ${clgqa_public_dir}/clgqa)
  foreach(header ${clgqa_below_public})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/include/clgqa/${header}
         ${clgqa_public_dir}/clgqa/${header} SYMBOLIC)
  endforeach()
  list(PREPEND clgqa_below_dirs ${CMAKE_SOURCE_DIR}/src/${layer})
  target_include_directories(clgqa_${layer} PRIVATE ${clgqa_public_dir} ${clgqa_below_dirs}
    ${RANDOM123_INCLUDE_DIR})
  target_link_libraries(clgqa_${layer} PRIVATE ${CLGQA_DEPENDENCIES})
endmacro()

# The rule, tested (ctest layer_rule, tests/layer_rule.sh): probes compiled
# with a layer's include path. One includes a lower layer's header and must
# compile; the others include a higher layer's header, private or public,
# and must fail with "No such file". Built only by the test.
set(CLGQA_LAYER_PROBES "")
function(clgqa_layer_probe name layer header)
  set(source ${CMAKE_BINARY_DIR}/layer_probes/${name}.c)
  file(WRITE ${source}.tmp "/* ${layer} including ${header} */\n#include \"${header}\"\n")
  file(COPY_FILE ${source}.tmp ${source} ONLY_IF_DIFFERENT)
  file(REMOVE ${source}.tmp)
  add_library(${name} OBJECT EXCLUDE_FROM_ALL ${source})
  target_include_directories(${name} PRIVATE
    $<TARGET_PROPERTY:clgqa_${layer},INCLUDE_DIRECTORIES>)
  target_compile_definitions(${name} PRIVATE
    $<TARGET_PROPERTY:clgqa_${layer},COMPILE_DEFINITIONS>)
  set(CLGQA_LAYER_PROBES ${CLGQA_LAYER_PROBES} "${name}:${header}" PARENT_SCOPE)
endfunction()
