// swift-tools-version:6.0
// One executable target per stage (StageN, product `stageN`) and its test target, plus the Shared libraries.
// Adding stage N is one entry in `stages`.
import PackageDescription

/// The built stages, by folder name under Stages/. The leading number names the target (Stage1, stage1, Stage1Tests).
let stages = [
  "1-scalar-autograd",
  "2-tensor-autograd",
  "3-layers-optimizers",
  "4-transformer",
  "5-pretraining",
  "6-fine-tuning",
  "7-parallelism",
  "8-mixed-precision",
]

/// Release builds of a stage and of the kernels skip Swift's run-time exclusivity check on class properties: in the
/// scalar engine it
/// costs a quarter of a training step (every `grad +=` on a node is checked). The compile-time check stays;
/// `make test` runs the tests in release too (debug took 15 minutes), and `make test-debug` runs them with the
/// run-time check on, where an overlapping access is still caught.
/// They are also compiled for the CPU that builds them (`-target-cpu native`, clang's -march=native), so the
/// elementwise loops use its widest SIMD instructions (AVX2 and FMA on a current x86, 8 floats at a time, instead
/// of the 4 of the x86-64 baseline). The stages are built from source where they run, so this costs no
/// portability. And `squareRoot()` may skip C's errno convention (-fno-math-errno for the C headers Swift's
/// standard library inlines): otherwise every square root keeps a branch to libm's sqrtf for negative inputs, and
/// a loop with one cannot become SIMD code.
let releaseSettings: [SwiftSetting] = [
  .unsafeFlags(
    ["-enforce-exclusivity=unchecked", "-target-cpu", "native", "-Xcc", "-fno-math-errno"],
    .when(configuration: .release))
]

/// Libraries every stage may use: infrastructure only, never a concept a stage teaches.
let shared: [Target] = [
  .systemLibrary(
    name: "CBLAS", path: "Shared/CBLAS", pkgConfig: "openblas",
    providers: [.apt(["libopenblas-dev"])]),
  .systemLibrary(name: "CMalloc", path: "Shared/CMalloc"),
  // MPI from stage 7 on (the `mpi` pkg-config name is MPICH's or Open MPI's, whichever Debian's alternatives chose).
  .systemLibrary(
    name: "CMPI", path: "Shared/CMPI", pkgConfig: "mpi", providers: [.apt(["libmpich-dev"])]),
  .target(name: "Support", dependencies: ["CMalloc"], path: "Shared/Support"),
  .target(
    name: "Kernels", dependencies: ["CBLAS", "Support", .product(name: "RealModule", package: "swift-numerics")],
    path: "Shared/Kernels", swiftSettings: releaseSettings),
  .target(name: "Datasets", dependencies: ["Support"], path: "Shared/Datasets", exclude: ["Data"]),
  .target(name: "Plotting", dependencies: ["Support"], path: "Shared/Plotting"),
  .target(name: "GradCheck", dependencies: ["Support"], path: "Shared/GradCheck"),
  .testTarget(
    name: "SharedTests", dependencies: ["CBLAS", "Support", "Kernels", "Datasets", "Plotting", "GradCheck"],
    path: "Tests/SharedTests", exclude: ["Fixtures"]),
]

let stageDependencies: [Target.Dependency] = [
  "CBLAS", "Support", "Kernels", "Datasets", "Plotting", "GradCheck",
  .product(name: "ArgumentParser", package: "swift-argument-parser"),
  .product(name: "Numerics", package: "swift-numerics"),
]

let stageTargets: [Target] = stages.flatMap { slug -> [Target] in
  let number = String(slug.prefix(while: \.isNumber))
  return [
    .executableTarget(
      name: "Stage\(number)", dependencies: stageDependencies + (Int(number)! >= 7 ? ["CMPI"] : []),
      path: "Stages/\(slug)",
      exclude: ["README.md"], swiftSettings: releaseSettings),
    .testTarget(
      name: "Stage\(number)Tests", dependencies: [.target(name: "Stage\(number)"), "GradCheck", "Kernels", "Support"],
      path: "Tests/Stage\(number)Tests"),
  ]
}

let package = Package(
  name: "FrameworkFromScratch",
  products: stages.map { slug in
    let number = String(slug.prefix(while: \.isNumber))
    return .executable(name: "stage\(number)", targets: ["Stage\(number)"])
  },
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
  ],
  targets: shared + stageTargets
)
