import CBLAS
import Foundation

/// OpenBLAS picks its kernels for the CPU when it loads: it reads the CPU's model number and chooses the code
/// written for that core. A release older than the CPU does not know its model number and falls back to "Prescott",
/// kernels from 2004 that use neither AVX nor FMA: Debian 12's OpenBLAS 0.3.21 does so on Intel's Emerald Rapids
/// (model 207), where its sgemm then runs at a quarter of the speed its AVX-512 kernels reach on the same core.
/// The choice can be forced with the variable OPENBLAS_CORETYPE, but OpenBLAS reads it only when it loads, before
/// `main` runs; so a program that finds itself on the fallback with a CPU that has the instructions of a better
/// core sets the variable and starts itself again, once, with the same arguments.
///
/// Call first thing in `main`. It does nothing when OPENBLAS_CORETYPE is already set (the user's choice, or the
/// restarted program), when OpenBLAS chose a real core, or off Linux.
public func restartIfBLASFellBackToGenericKernels() {
  #if os(Linux)
    guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
      let name = openblas_get_corename(), String(cString: name).lowercased() == "prescott",
      let core = betterBLASCore(cpuFlags: cpuFlags())
    else { return }
    setenv("OPENBLAS_CORETYPE", core, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
  // Only reached if the restart failed: go on with the slow kernels, which compute the same products.
  #endif
}

/// The best OpenBLAS core whose instructions the CPU has: SkylakeX for AVX-512 (the subsets its kernels use),
/// Haswell for AVX2 with FMA; nil when neither (the fallback is then the right choice).
func betterBLASCore(cpuFlags flags: Set<String>) -> String? {
  if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"]) { return "SkylakeX" }
  if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
  return nil
}

/// The instruction-set flags the kernel reports for the first CPU (/proc/cpuinfo), empty if it cannot be read.
func cpuFlags() -> Set<String> {
  guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
    let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
  else { return [] }
  return Set(line.split(separator: ":").last?.split(separator: " ").map(String.init) ?? [])
}

/// The name of the kernels OpenBLAS runs on ("SkylakeX", "Haswell", ...), for a bench to print.
public var blasCoreName: String {
  openblas_get_corename().map { String(cString: $0) } ?? "unknown"
}
