import Support
import Testing

@testable import Stage8

/// Making tensors, reading them, reshaping them, printing them.
@Suite struct TensorTests {
  typealias T = Tensor<Double>

  @Test func creation() {
    #expect(T.zeros([2, 3]).storage == [0, 0, 0, 0, 0, 0])
    #expect(T.ones([2]).storage == [1, 1])
    #expect(T.full([1, 2], 7).storage == [7, 7])
    #expect(T(scalar: 3).shape == [])
    var a = SeededRNG(seed: 9)
    var b = SeededRNG(seed: 9)
    #expect(T.normal([4], rng: &a).storage == T.normal([4], rng: &b).storage)
    let u = T.uniform([1000], low: 2, high: 3, rng: &a)
    #expect(u.storage.allSatisfy { $0 >= 2 && $0 < 3 })
  }

  @Test func elementAccessIsRowMajor() {
    let x = T((0..<24).map(Double.init), shape: [2, 3, 4])
    #expect(x.strides == [12, 4, 1])
    #expect(x[1, 2, 3] == 23)
    #expect(x[0, 1, 0] == 4)
    #expect(T(scalar: 5).item == 5)
  }

  @Test func reshapeKeepsTheOrderAndInfersMinusOne() {
    let x = T((0..<6).map(Double.init), shape: [2, 3])
    let y = x.reshape([3, -1])
    #expect(y.shape == [3, 2])
    #expect(y.storage == x.storage)
  }

  @Test func permuteAndTransposeMoveElements() {
    let x = T((0..<6).map(Double.init), shape: [2, 3])
    #expect(x.transposed().storage == [0, 3, 1, 4, 2, 5])
    let cube = T((0..<24).map(Double.init), shape: [2, 3, 4])
    let moved = cube.permute([2, 0, 1])
    #expect(moved.shape == [4, 2, 3])
    #expect(moved[3, 1, 2] == cube[1, 2, 3])
  }

  @Test func slicingConcatenatingAndSplittingRoundTrip() {
    let x = T((0..<12).map(Double.init), shape: [4, 3])
    #expect(x[1..<3].storage == [3, 4, 5, 6, 7, 8])
    let y = T([100, 101], shape: [2, 1])
    let joined = Tensor.concatenate([x[0..<2], y], axis: 1)
    #expect(joined.shape == [2, 4])
    #expect(joined.storage == [0, 1, 2, 100, 3, 4, 5, 101])
    let pieces = joined.split([3, 1], axis: 1)
    #expect(pieces[0].storage == x[0..<2].storage)
    #expect(pieces[1].storage == [100, 101])
  }

  @Test func theDescriptionLooksLikePyTorchs() {
    #expect(T([1, 2.5], shape: [2]).description == "tensor([1.0000, 2.5000], shape [2])")
    #expect(
      T([1, 2, 3, 4], shape: [2, 2]).description
        == "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], shape [2, 2])")
    let long = T((0..<10).map(Double.init), shape: [10], requiresGrad: true).description
    #expect(long == "tensor([0.0000, 1.0000, 2.0000, ..., 7.0000, 8.0000, 9.0000], shape [10], requiresGrad)")
  }

  @Test func floatAndDoubleConvert() {
    let x = T([0.5, -2], shape: [2])
    #expect(x.converted(to: Float.self).storage == [0.5, -2])
  }
}
