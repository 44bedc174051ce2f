# fleet_sanitize(<target>) adds the sanitizer flags chosen by FLEET_SANITIZE.
if(FLEET_SANITIZE AND NOT FLEET_SANITIZE MATCHES "^(address,undefined|address|undefined|thread)$")
  message(FATAL_ERROR "FLEET_SANITIZE must be empty, 'address,undefined' or 'thread'")
endif()

function(fleet_sanitize target)
  if(FLEET_SANITIZE)
    target_compile_options(${target} PRIVATE
      -fsanitize=${FLEET_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${FLEET_SANITIZE})
  endif()
endfunction()
