# CMake package of the multiscale surrogate evaluator (installed with the Python package).
#
#   find_package(multiscale CONFIG REQUIRED)   # with -Dmultiscale_DIR=$(python -c "import multiscale.export as e; print(e.get_cmake_dir())")
#   target_link_libraries(app PRIVATE multiscale::surrogate)   # C API, libmultiscale_surrogate
#   target_link_libraries(app PRIVATE multiscale::evaluator)   # header-only C++ evaluator
include("${CMAKE_CURRENT_LIST_DIR}/multiscaleTargets.cmake")
set(multiscale_FOUND TRUE)
