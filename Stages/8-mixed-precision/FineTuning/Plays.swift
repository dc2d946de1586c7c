import Support

/// The data of the fine-tuning tasks: the speeches of the two plays at the end of Tiny Shakespeare (The Taming of
/// the Shrew and The Tempest). They lie in its validation split, the last 10% of its characters, which
/// pretraining never trains on, so the pretrained model has never learned from them.

/// One speech: who speaks, and the speech as the corpus writes it ("PETRUCHIO:\n..." without the blank line).
public struct Speech: Equatable, Sendable {
  public let speaker: String
  public let text: String
}

/// The speeches of `text`: its paragraphs (separated by a blank line) whose first line is a speaker's name in
/// capitals followed by a colon, with at least one line after it. A paragraph cut by the split is left out.
public func playSpeeches(in text: String) -> [Speech] {
  text.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n\n").compactMap { paragraph in
    let lines = paragraph.split(separator: "\n", omittingEmptySubsequences: false)
    guard lines.count >= 2, let name = lines.first, name.hasSuffix(":"), name.count > 1,
      name.dropLast().allSatisfy({ $0.isUppercase || $0 == " " || $0 == "'" || $0 == "-" })
    else { return nil }
    let body = lines.dropFirst().joined(separator: "\n")
    guard !body.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
    return Speech(speaker: String(name.dropLast()), text: String(paragraph))
  }
}

/// The language-modelling task: the speeches of the new plays shuffled with `seed` and cut in two halves, one to
/// fine-tune on and one to measure on, each as one text (speeches joined by blank lines, as in the corpus). A tenth
/// of the first half is kept apart as validation, to choose a learning rate on without looking at the other half.
public struct NewPlays: Sendable {
  public let train: String
  public let validation: String
  public let heldOut: String
  public let speeches: Int

  public init(validationText: String, seed: UInt64) throws {
    let all = playSpeeches(in: validationText)
    guard all.count >= 20 else {
      throw UserError("the corpus's validation split holds \(all.count) speeches; fine-tuning needs at least 20")
    }
    var rng = SeededRNG(seed: seed)
    var order = Array(all.indices)
    rng.shuffle(&order)
    let half = all.count / 2
    let validationCount = max(1, half / 10)
    func text(_ indices: ArraySlice<Int>) -> String { indices.sorted().map { all[$0].text }.joined(separator: "\n\n") }
    train = text(order[..<(half - validationCount)])
    validation = text(order[(half - validationCount)..<half])
    heldOut = text(order[half...])
    speeches = all.count
  }
}
