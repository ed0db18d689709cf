# The loader's layers (loader/README.md) as static libraries whose public
# include directory shows one layer only, spelt as in the sources:
# ${CMAKE_BINARY_DIR}/layers/<layer> holds a single symlink
# <layer> -> loader/<layer>, so `#include "base/error.hpp"` works where
# kvmxdp_base is linked and nowhere else.  A layer links only the layers
# below it: an include of a higher layer fails to compile.
get_filename_component(KVX_LOADER_DIR ${CMAKE_CURRENT_LIST_DIR}/../loader ABSOLUTE)

# kvx_layer_include_dir(LAYER OUT_VAR): the include directory of LAYER.
function(kvx_layer_include_dir layer out)
  set(dir ${CMAKE_BINARY_DIR}/layers/${layer})
  if(NOT EXISTS ${dir}/${layer})
    file(MAKE_DIRECTORY ${dir})
    file(CREATE_LINK ${KVX_LOADER_DIR}/${layer} ${dir}/${layer} SYMBOLIC)
  endif()
  set(${out} ${dir} PARENT_SCOPE)
endfunction()

# kvx_loader_layer(LAYER SOURCES...): the library kvmxdp_<LAYER>.
function(kvx_loader_layer layer)
  add_library(kvmxdp_${layer} STATIC ${ARGN})
  kvx_layer_include_dir(${layer} dir)
  target_include_directories(kvmxdp_${layer} PUBLIC ${dir})
endfunction()
