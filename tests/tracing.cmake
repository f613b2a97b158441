# The USDT probes (src/base/trace.h, docs/TRACING.md) are in the built library: readelf -n
# lists every one, provider bulkrcu. Only in builds that found <sys/sdt.h>.
if(BULKRCU_HAVE_SDT)
  find_program(BULKRCU_READELF readelf)
  if(BULKRCU_READELF)
    set(bulkrcu_probes gp_start gp_end stall_warning block_close batch_ready reclaim reclaim_help
        fallback_head fallback_inplace fallback_reserve fallback_synchronize budget_hit callbacks_invoked)
    string(REPLACE ";" "|" bulkrcu_probe_list "${bulkrcu_probes}")
    add_test(NAME bulkrcu.usdt_probes
      COMMAND ${CMAKE_COMMAND} -DREADELF=${BULKRCU_READELF} -DLIB=$<TARGET_FILE:bulkrcu>
              "-DPROBES=${bulkrcu_probe_list}" -P ${CMAKE_CURRENT_SOURCE_DIR}/check_probes.cmake.in)
  endif()
endif()
