# kvmxdp_bpf_skeleton(NAME SOURCE [INCLUDES dir...])
#
# Compiles SOURCE (a *.bpf.c) with clang for the BPF target, turns the object
# into a libbpf skeleton with bpftool, and defines the INTERFACE target
# NAME_skel whose include directory holds NAME.skel.h.  The skeleton embeds
# the object, so binaries linking NAME_skel are self-contained.
#
# A function (not a macro) so that its variables stay local; header
# dependencies are tracked with clang's depfile.
# The compiler flags live in cmake/bpf-cc (uapi headers only, never libc),
# which the benchmark and the tests' throw-away programs call too.
find_program(BPF_CLANG NAMES clang-14 clang REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)
set(BPF_CC ${CMAKE_CURRENT_LIST_DIR}/bpf-cc CACHE INTERNAL "")
# Measurement builds only: extra clang flags for every BPF object, e.g.
# -DKVX_NO_GUEST_STATS (bpf/lib/stats.h) for the benchmark's before/after of
# the per-guest counters.  Empty in every build users get.
set(KVMXDP_BPF_EXTRA_FLAGS "" CACHE STRING
    "extra clang flags for the BPF objects (measurement builds only)")

function(kvmxdp_bpf_skeleton name source)
  cmake_parse_arguments(ARG "" "" "INCLUDES" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/${name})
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)
  set(dep ${out_dir}/${name}.bpf.d)
  get_filename_component(src_abs ${source} ABSOLUTE)

  set(inc_flags "")
  foreach(dir ${ARG_INCLUDES})
    get_filename_component(dir_abs ${dir} ABSOLUTE)
    list(APPEND inc_flags -I${dir_abs})
  endforeach()

  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${CMAKE_COMMAND} -E env BPF_CLANG=${BPF_CLANG}
            ${BPF_CC} ${inc_flags} ${KVMXDP_BPF_EXTRA_FLAGS} -MD -MF ${dep} -c ${src_abs} -o ${obj}
    DEPENDS ${src_abs} ${BPF_CC}
    DEPFILE ${dep}
    COMMENT "BPF ${name}.bpf.o"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}
    DEPENDS ${obj}
    COMMENT "BPF skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel_gen ALL DEPENDS ${skel})

  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${out_dir})
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
  # The object itself, for tools that want it (bpftool prog load, tests).
  set_property(TARGET ${name}_skel PROPERTY KVX_BPF_OBJECT ${obj})
endfunction()
