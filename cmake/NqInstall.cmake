# Install rules: the public header, libnq.so.1 and libnq.a, a pkg-config file
# and a CMake package exporting nq::nq and, as the component "static",
# nq::nq_static.
#
# Every installed file locates the prefix from its own place, so the tree
# works wherever it lands (cmake --install --prefix, DESTDIR, a copied tree).

include(CMakePackageConfigHelpers)

set(NQ_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/nq)
set(NQ_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(FILES ${PROJECT_SOURCE_DIR}/abi/include/nq/nq.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/nq
  COMPONENT nq_development)

install(TARGETS nq EXPORT nqTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT nq_runtime
    NAMELINK_COMPONENT nq_development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT nq_runtime)
install(TARGETS nq_static EXPORT nqStaticTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT nq_development)

install(EXPORT nqTargets
  NAMESPACE nq::
  FILE nqTargets.cmake
  DESTINATION ${NQ_CMAKE_DIR}
  COMPONENT nq_development)
install(EXPORT nqStaticTargets
  NAMESPACE nq::
  FILE nqStaticTargets.cmake
  DESTINATION ${NQ_CMAKE_DIR}
  COMPONENT nq_development)

# nq_static_link_needs(): what libnq.a's users must link besides it, read
# from the link interface of nq_static so that no dependency is forgotten
# here.  Sets in the caller's scope
#   NQ_FIND_DEPENDENCIES    find_dependency() calls for nqConfig.cmake
#   NQ_PC_REQUIRES_PRIVATE  pkg-config modules for Requires.private
#   NQ_PC_LIBS_PRIVATE      linker flags for Libs.private
# A package's CMake name is the namespace of its imported targets.
function(nq_static_link_needs)
  set(finds "")
  set(requires "")
  set(libs "")
  set(packages "")
  get_target_property(deps nq_static INTERFACE_LINK_LIBRARIES)
  if(NOT deps)
    set(deps "")
  endif()
  foreach(dep IN LISTS deps)
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" dep "${dep}")
    if(NOT dep MATCHES "^([A-Za-z0-9_.+-]+)::" OR NOT TARGET ${dep})
      message(FATAL_ERROR "cmake/NqInstall.cmake: nq_static links '${dep}', which is not an "
        "imported Package::target; nqConfig.cmake and nq.pc cannot describe it")
    endif()
    set(pkg ${CMAKE_MATCH_1})
    if(NOT pkg IN_LIST packages)
      list(APPEND packages ${pkg})
      if(pkg STREQUAL "OpenSSL")
        string(APPEND finds "  find_dependency(OpenSSL 3)\n")
        list(APPEND requires "openssl >= 3")
      else()
        string(APPEND finds "  find_dependency(${pkg})\n")
      endif()
    endif()
    if(pkg STREQUAL "OpenSSL")
      continue()
    elseif(dep STREQUAL "Threads::Threads")
      list(APPEND libs "-pthread")
      continue()
    endif()
    get_target_property(type ${dep} TYPE)
    if(NOT type MATCHES "^(SHARED|STATIC)_LIBRARY$")
      message(FATAL_ERROR "cmake/NqInstall.cmake: nq_static links ${dep} (${type}); "
        "say here how pkg-config users link it")
    endif()
    get_target_property(file ${dep} LOCATION)
    get_filename_component(name "${file}" NAME)
    if(NOT name MATCHES "^lib(.+)\\.(so|a)(\\.[0-9.]+)?$")
      message(FATAL_ERROR "cmake/NqInstall.cmake: cannot name ${dep} (${file}) for -l")
    endif()
    list(APPEND libs "-l${CMAKE_MATCH_1}")
  endforeach()
  list(REMOVE_DUPLICATES libs)
  list(JOIN requires ", " requires)
  list(JOIN libs " " libs)
  set(NQ_FIND_DEPENDENCIES "${finds}" PARENT_SCOPE)
  set(NQ_PC_REQUIRES_PRIVATE "${requires}" PARENT_SCOPE)
  set(NQ_PC_LIBS_PRIVATE "${libs}" PARENT_SCOPE)
endfunction()
nq_static_link_needs()

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/nqConfig.cmake.in
  ${PROJECT_BINARY_DIR}/nqConfig.cmake
  INSTALL_DESTINATION ${NQ_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/nqConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/nqConfig.cmake ${PROJECT_BINARY_DIR}/nqConfigVersion.cmake
  DESTINATION ${NQ_CMAKE_DIR}
  COMPONENT nq_development)

# nq.pc finds the prefix through pkg-config's ${pcfiledir}, unless the
# install directories were given as absolute paths.
function(nq_pc_path out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
if(IS_ABSOLUTE "${NQ_PKGCONFIG_DIR}")
  set(NQ_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH NQ_PC_UP "/nq-prefix/${NQ_PKGCONFIG_DIR}" "/nq-prefix")
  string(REGEX REPLACE "/$" "" NQ_PC_UP "${NQ_PC_UP}")
  set(NQ_PC_PREFIX "\${pcfiledir}/${NQ_PC_UP}")
endif()
nq_pc_path(NQ_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
nq_pc_path(NQ_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/nq.pc.in ${PROJECT_BINARY_DIR}/nq.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/nq.pc
  DESTINATION ${NQ_PKGCONFIG_DIR}
  COMPONENT nq_development)
