plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.edgeasr.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "org.edgeasr.demo"
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        ndk {
            // executorch-android ships these ABIs; x86_64 is for the emulator
            abiFilters += listOf("arm64-v8a", "x86_64")
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            // Device-farm builds are signed with the debug key; a store build needs a real signing config.
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }

    sourceSets["main"].java.srcDirs("src/main/kotlin")

    androidResources {
        // model.pte is copied out of the APK once (Module.load takes a file path); stored uncompressed,
        // that copy is a plain read and the APK is not bigger for it (the weights do not compress).
        noCompress += listOf("pte")
    }
}

dependencies {
    implementation(project(":core"))
    // Same version as the Python exporter's executorch==1.5.1 (pyproject.toml): the runtime must read the
    // program format and run the kernels (quantised embeddings, XNNPACK 8da4w) the exporter emitted.
    implementation("org.pytorch:executorch-android:1.5.1")
}
