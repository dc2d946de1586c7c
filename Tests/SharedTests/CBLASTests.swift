import CBLAS
import Testing

/// Stage 1 does not use BLAS, but the wiring (pkg-config, module map, linking) is in place for stage 2: this
/// proves it links and multiplies.
@Suite struct CBLASTests {
  @Test func dgemmMultipliesRowMajorMatrices() {
    // [1 2 3; 4 5 6] @ [7 8; 9 10; 11 12] = [58 64; 139 154]
    let a: [Double] = [1, 2, 3, 4, 5, 6]
    let b: [Double] = [7, 8, 9, 10, 11, 12]
    var c = [Double](repeating: 0, count: 4)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 3, 1, a, 3, b, 2, 0, &c, 2)
    #expect(c == [58, 64, 139, 154])
  }
}
