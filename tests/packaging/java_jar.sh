#!/usr/bin/env bash
# The jar as a Java user gets it: `mvn install` of bindings/java (its JNI
# library built by Maven itself, libnq linked in, carried in the jar), then
# a Maven project outside the tree that declares only the dependency
# org.libnq:libnq compiles an echo, which runs with plain `java -cp` (no
# java.library.path, LD_LIBRARY_PATH empty).
#
# Usage: java_jar.sh SOURCE_DIR BUILD_DIR WORK_DIR MVN JAVA VERSION
#   BUILD_DIR  Maven builds into BUILD_DIR/bindings/java/maven (-Dnq.build)
#   WORK_DIR   scratch space, wiped first
#   VERSION    libnq's version, which the POM's must equal
# The jar is installed into the user's Maven repository (~/.m2/repository),
# as `mvn install` does.
set -euo pipefail

[ $# -eq 6 ] || { echo "usage: $0 SOURCE_DIR BUILD_DIR WORK_DIR MVN JAVA VERSION" >&2; exit 2; }
source_dir=$1
build_dir=$2
work=$3
mvn=$4
java=$5

fail() { printf 'java_jar: FAIL: %s\n' "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

rm -rf "$work"
mkdir -p "$work"
pom=$source_dir/bindings/java/pom.xml
mvn_flags=(-B --no-transfer-progress)

# The project's own version is the POM's first <version>.
version=$(sed -n '0,/<version>/s|.*<version>\(.*\)</version>.*|\1|p' "$pom")
[ "$version" = "$6" ] || fail "pom.xml's version $version is not libnq's $6"

step "mvn install (bindings/java)"
"$mvn" "${mvn_flags[@]}" -q -f "$pom" -Dnq.build="$build_dir" -DskipTests install ||
    fail "mvn install failed"
jar=$HOME/.m2/repository/org/libnq/libnq/$version/libnq-$version.jar
[ -f "$jar" ] || fail "$jar was not installed"
for classifier in sources javadoc; do
    [ -f "${jar%.jar}-$classifier.jar" ] || fail "no $classifier jar beside $jar"
done
# (Listings go through variables: grep -q closing a pipe early would fail it.)
listing=$(unzip -l "$jar")
grep -q 'org/libnq/internal/native/linux-x86_64/libnqjni.so' <<<"$listing" ||
    fail "$jar carries no libnqjni.so"
manifest=$(unzip -p "$jar" META-INF/MANIFEST.MF)
grep -q '^Automatic-Module-Name: org.libnq' <<<"$manifest" ||
    fail "$jar has no Automatic-Module-Name"

# A project of its own, outside the tree.
outside=$(mktemp -d)
trap 'rm -rf "$outside"' EXIT
cd "$outside"
mkdir -p src/main/java/example
cat >pom.xml <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId>
  <artifactId>echo</artifactId>
  <version>1</version>
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencies>
    <dependency>
      <groupId>org.libnq</groupId>
      <artifactId>libnq</artifactId>
      <version>$version</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-resources-plugin</artifactId>
        <version>3.3.1</version>
      </plugin>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-compiler-plugin</artifactId>
        <version>3.13.0</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
cat >src/main/java/example/Echo.java <<'EOF'
package example;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.libnq.Communicator;
import org.libnq.Message;
import org.libnq.Options;
import org.libnq.Protocol;
import org.libnq.Purpose;

/** A server echoes what its client sends. */
public final class Echo {
    public static void main(String[] args) throws Exception {
        Duration wait = Duration.ofSeconds(30);
        try (Communicator server = Communicator.open(Protocol.TCP, Purpose.SERVER,
                     Options.builder().address("127.0.0.1", 0).build());
             Communicator client = Communicator.open(Protocol.TCP, Purpose.CLIENT,
                     Options.builder().address("127.0.0.1", server.localPort()).build())) {
            client.put("echo me".getBytes(StandardCharsets.UTF_8)).join();
            Message request = server.get(wait);
            server.put(request.data(), request.peer()).join();
            System.out.println("echo " + new String(client.get(wait).data(), StandardCharsets.UTF_8));
        }
    }
}
EOF

step "mvn compile (a project that declares only org.libnq:libnq:$version)"
"$mvn" "${mvn_flags[@]}" -q -o compile || fail "the outside project did not compile"

step "java -cp target/classes:$(basename "$jar") example.Echo"
out=$(env -u JAVA_TOOL_OPTIONS -u _JAVA_OPTIONS LD_LIBRARY_PATH= \
    timeout -k 5 60 "$java" -cp "target/classes:$jar" example.Echo 2>&1) ||
    fail "the echo failed: $out"
printf '%s\n' "$out"
[ "$out" = "echo echo me" ] || fail "unexpected output"
echo "java_jar: OK"
