import Foundation

/// Tiny Shakespeare: 40,000 lines of Shakespeare's plays, 1,115,394 characters (65 distinct), the corpus of
/// char-rnn and nanoGPT. The project carries the file in Shared/Datasets/Data (see the README there).
public let shakespearePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .appendingPathComponent("Data/tinyshakespeare.txt").path
