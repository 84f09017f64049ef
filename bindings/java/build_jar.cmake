# cmake -DJAVAC= -DJAR= -DSOURCES= -DGENERATED= -DCLASSES= -DOUTPUT= -P build_jar.cmake
# Compiles the hand-written and the SWIG-generated Java sources (whose names
# depend on nq.i, hence the glob at build time) and packs them into OUTPUT.
file(GLOB_RECURSE sources ${SOURCES}/*.java ${GENERATED}/*.java)
file(REMOVE_RECURSE ${CLASSES})
file(MAKE_DIRECTORY ${CLASSES})
execute_process(
  COMMAND ${JAVAC} --release 17 -encoding UTF-8 -Xlint:all,-serial -d ${CLASSES} ${sources}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "javac failed")
endif()
execute_process(COMMAND ${JAR} --create --file ${OUTPUT} -C ${CLASSES} . RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jar failed")
endif()
