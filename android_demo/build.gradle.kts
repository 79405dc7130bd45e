// Versions chosen for a workstation build with JDK 17: Gradle 8.7+, Android Gradle Plugin 8.5, Kotlin 1.9.
// (None of this can run on the edgeasr CI machine, which has no Android SDK or Maven access; see README.md.)
plugins {
    id("com.android.application") version "8.5.2" apply false
    id("org.jetbrains.kotlin.android") version "1.9.24" apply false
    id("org.jetbrains.kotlin.jvm") version "1.9.24" apply false
}
