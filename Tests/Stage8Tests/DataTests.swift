import Support
import Testing

@testable import Stage8

@Suite struct DataTests {
  @Test func theLoaderDealsEveryExampleOncePerEpochInANewOrder() {
    let loader = BatchLoader(count: 10, batchSize: 4)
    let random = RandomSource(seed: 1)
    let first = loader.epoch(random)
    let second = loader.epoch(random)
    #expect(first.map(\.count) == [4, 4, 2])
    #expect(Set(first.joined()) == Set(0..<10) && Set(second.joined()) == Set(0..<10))
    #expect(first != second)
    #expect(BatchLoader(count: 5, batchSize: 2, shuffle: false).epoch(random) == [[0, 1], [2, 3], [4]])
  }
}
