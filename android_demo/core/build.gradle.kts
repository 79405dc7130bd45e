import org.jetbrains.kotlin.gradle.tasks.KotlinCompile

// The model-independent part of the app (WAV, log-mel, greedy decoding, token decoding, benchmark records):
// plain Kotlin/JVM with no dependency but the standard library, so it is tested on any JVM.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

tasks.withType<KotlinCompile>().configureEach {
    kotlinOptions.jvmTarget = "17"
}

// The JVM tests use their own tiny runner (src/test/kotlin/.../Checks.kt) so that they also run with a bare
// kotlinc (tests/test_android_core.py in the Python suite). They read vectors made by the Python side:
//   python android_demo/tools/make_test_vectors.py runtime --out /tmp/v --tokenizer TOKENIZER_JSON --data ENGLISH_MISC
//   gradle :core:jvmTests -PedgeasrVectors=/tmp/v/vectors.json
val vectors = providers.gradleProperty("edgeasrVectors")
val jvmTests by tasks.registering(JavaExec::class) {
    group = "verification"
    description = "Runs the core's JVM tests against vectors made by tools/make_test_vectors.py"
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("org.edgeasr.core.CoreTestsKt")
    argumentProviders.add(CommandLineArgumentProvider { listOf(vectors.get()) })
    doFirst {
        if (!vectors.isPresent) {
            throw GradleException("pass -PedgeasrVectors=DIR/vectors.json (make it with tools/make_test_vectors.py runtime)")
        }
    }
}
