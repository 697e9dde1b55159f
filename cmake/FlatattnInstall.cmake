# cmake --install: headers, the shared library and a package so that
#   find_package(flatattn) + target_link_libraries(app flatattn::flatattn)
# works from the install prefix.
include(CMakePackageConfigHelpers)
install(TARGETS flatattn EXPORT flatattnTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/flatattn DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/include/flatattn/version.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/flatattn)
install(EXPORT flatattnTargets NAMESPACE flatattn:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flatattn)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/flatattnConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/flatattnConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flatattn)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/flatattnConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/flatattnConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/flatattnConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flatattn)
if(TARGET flatattn_cli)
  install(TARGETS flatattn_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
