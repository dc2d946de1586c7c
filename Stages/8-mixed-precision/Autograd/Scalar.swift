import Kernels

/// The element types a tensor can hold: Float, for training, and Double, for gradient checks. Everything a kernel
/// needs of them (swift-numerics' `Real` maths, BLAS's gemm per type, the fast exp) is `KernelScalar`'s, in
/// Shared/Kernels; a tensor adds only what printing and checkpoints use.
public protocol TensorScalar: KernelScalar, CustomStringConvertible {}

extension Float: TensorScalar {}
extension Double: TensorScalar {}
