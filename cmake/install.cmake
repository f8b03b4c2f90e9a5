# The installed package: headers, libclgqa.so (versioned, exporting only what
# the installed headers declare) and libclgqa.a, bin/clgqa, clgqa.pc and the
# CMake package clgqa::clgqa. Kernels, tuning files and the demo config are
# embedded in the library, so nothing else is needed at run time.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

file(GLOB CLGQA_PUBLIC_HEADERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/include/clgqa/*.h)

if(CLGQA_SHARED)
  # The linker version script: the functions the installed headers declare
  # are global, everything else (the internal clgqa_* functions included) is
  # local to the library.
  set(CLGQA_EXPORT_MAP ${CMAKE_BINARY_DIR}/clgqa.map)
  add_custom_command(
    OUTPUT ${CLGQA_EXPORT_MAP}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${CLGQA_EXPORT_MAP} -DHEADER_DIR=${CMAKE_SOURCE_DIR}/include/clgqa
            -P ${CMAKE_SOURCE_DIR}/cmake/export_map.cmake
    DEPENDS ${CLGQA_PUBLIC_HEADERS} ${CMAKE_SOURCE_DIR}/cmake/export_map.cmake
    COMMENT "Listing the functions of the public headers (libclgqa.so exports)" VERBATIM)
  add_custom_target(clgqa_export_map DEPENDS ${CLGQA_EXPORT_MAP})

  add_library(clgqa_shared SHARED ${CLGQA_OBJECTS})
  add_dependencies(clgqa_shared clgqa_export_map)
  set_target_properties(clgqa_shared PROPERTIES OUTPUT_NAME clgqa EXPORT_NAME clgqa
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
    LINK_DEPENDS ${CLGQA_EXPORT_MAP})
  target_link_options(clgqa_shared PRIVATE "LINKER:--version-script=${CLGQA_EXPORT_MAP}")
  if(NOT CLGQA_SANITIZE)
    # Every symbol the library uses is resolved by its own dependencies.
    target_link_options(clgqa_shared PRIVATE "LINKER:-z,defs")
  endif()
  target_include_directories(clgqa_shared INTERFACE
    $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(clgqa_shared PRIVATE ${CLGQA_DEPENDENCIES})
  install(TARGETS clgqa_shared EXPORT clgqaTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT clgqaTargets NAMESPACE clgqa:: FILE clgqaTargets.cmake
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clgqa)
  configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/clgqaConfig.cmake.in
    ${CMAKE_BINARY_DIR}/clgqaConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clgqa)
  write_basic_package_version_file(${CMAKE_BINARY_DIR}/clgqaConfigVersion.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
  install(FILES ${CMAKE_BINARY_DIR}/clgqaConfig.cmake ${CMAKE_BINARY_DIR}/clgqaConfigVersion.cmake
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clgqa)
endif()

install(TARGETS clgqa_lib ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CLGQA_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/clgqa)

# clgqa.pc finds its prefix from its own location, so the package works
# wherever `cmake --install build --prefix P` puts it. OpenCL is public (the
# headers use its types); the rest is linked only by static users.
file(RELATIVE_PATH CLGQA_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" CLGQA_PC_TO_PREFIX "${CLGQA_PC_TO_PREFIX}")
set(CLGQA_PC_LIBS_PRIVATE "-lm -pthread")
if(CLGQA_MPI AND MPI_C_FOUND)
  string(APPEND CLGQA_PC_LIBS_PRIVATE " ${MPI_C_LINK_FLAGS}")
  foreach(lib ${MPI_C_LIBRARIES})
    string(APPEND CLGQA_PC_LIBS_PRIVATE " ${lib}")
  endforeach()
endif()
configure_file(${CMAKE_SOURCE_DIR}/cmake/clgqa.pc.in ${CMAKE_BINARY_DIR}/clgqa.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/clgqa.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
