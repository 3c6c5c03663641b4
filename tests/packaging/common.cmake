# Helpers of the packaging test scripts.

# Runs a command; stops the script with its output when it fails.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " cmd)
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}")
  endif()
endfunction()

# Runs the embed example (it fails by itself below its accuracy bar) and checks that it reports the
# version of this build.
function(run_embed program)
  execute_process(COMMAND ${program} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message(STATUS "${program}:\n${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${program} failed (${rc})")
  endif()
  if(NOT out MATCHES "tapegrad ${VERSION}\n")
    message(FATAL_ERROR "${program} did not report tapegrad ${VERSION}")
  endif()
endfunction()
