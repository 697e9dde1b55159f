# Decides whether the CUDA backend is built (FLATATTN_CUDA = AUTO | ON | OFF) and sets FLATATTN_WITH_CUDA.
set(FLATATTN_WITH_CUDA OFF)
string(TOUPPER "${FLATATTN_CUDA}" _fa_cuda)
if(NOT _fa_cuda MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "FLATATTN_CUDA=${FLATATTN_CUDA}: allowed values are AUTO, ON, OFF")
endif()
if(NOT _fa_cuda STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    set(FLATATTN_WITH_CUDA ON)
    # CMake 3.25 does not know that nvcc >= 12 speaks C++20: without these, any target whose languages
    # include CUDA and which follows CXX_STANDARD 20 fails to generate ("requires the language dialect
    # CUDA20"). Set here, in the top-level scope right after enable_language(CUDA), so that every
    # directory sees them: the Makefile generator checks the dialect of flatattn_core (defined at the top
    # level; it links the CUDA object libraries) where Ninja did not, so a src/cuda-only setting broke
    # `cmake -S . -B build` with the default generator. Newer CMake versions define them themselves.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
  elseif(_fa_cuda STREQUAL "ON")
    message(FATAL_ERROR "FLATATTN_CUDA=ON but no CUDA compiler was found: install the CUDA toolkit "
                        "(nvcc) or configure with -DFLATATTN_CUDA=OFF")
  endif()
endif()
message(STATUS "flatattn: CUDA backend ${FLATATTN_WITH_CUDA}")
