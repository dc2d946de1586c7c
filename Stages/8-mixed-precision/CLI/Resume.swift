import ArgumentParser
import Support

/// `--resume`: a run continues with the options it was started with. The checkpoint records them ("--lr 0.003
/// --seed 1337 ..."), so the command line may leave them out or repeat them; only the length of the run may
/// change. An option that contradicts the checkpoint is refused by name: a resumed run that trained on with
/// another learning rate or batch size would be neither the old run nor a new one, and its result would mislead.
protocol ResumableCommand: ParsableCommand {
  /// The options of this command that a checkpoint records, with this command's values.
  var recordedOptions: [(flag: String, value: String)] { get }
}

extension ResumableCommand {
  /// This command as the checkpoint's `saved` options make it, with the command line's own `arguments` on top.
  /// Flags in `free` may differ from the checkpoint; any other that does is an error naming it. `required` are
  /// the arguments without which the command does not parse at all (a sample's --checkpoint).
  static func resuming(
    _ saved: [(flag: String, value: String)], source: String, free: Set<String> = [], required: [String] = [],
    arguments: [String] = commandLineArguments()
  ) throws -> Self {
    // Only options the checkpoint records may come from it: a hand-edited "--data" or "--plot-dir" in its metadata
    // is refused here, before it could read or create anything.
    let known = Set((try parse(required)).recordedOptions.map(\.flag))
    if let extra = saved.first(where: { !known.contains($0.flag) }) {
      throw UserError("checkpoint '\(source)': metadata 'options' has \(extra.flag), which this run does not record")
    }
    let savedArguments = saved.map(argument)
    let recorded: Self
    do {
      recorded = try parse(savedArguments + required)
    } catch {
      throw UserError("checkpoint '\(source)': its metadata 'options' are not valid here: \(message(for: error))")
    }
    // ArgumentParser keeps the last value of an option given twice: the command line's own values win.
    let merged = try parse(savedArguments + arguments)
    for (old, new) in zip(recorded.recordedOptions, merged.recordedOptions) where !free.contains(old.flag) {
      guard old.value == new.value else {
        let made = "'\(source)' was made with \(old.flag) \(old.value)"
        throw UserError("\(new.flag) \(new.value) conflicts with the checkpoint: \(made) (leave \(old.flag) out)")
      }
    }
    return merged
  }

  /// Restores `trainer` from `saved`, the checkpoint --resume names (nothing without one), and returns the lines to
  /// print after the run's header: where it resumed, and a note when --steps is not the length the checkpoint's run
  /// planned (the cosine schedule is then re-derived). A checkpoint at --steps already is refused.
  func restore(_ trainer: some CheckpointedRun, from saved: CheckpointReader?, steps: Int) throws -> [String] {
    guard let saved else { return [] }
    let planned = try saved.options().first { $0.flag == "--steps" }.flatMap { Int($0.value) } ?? steps
    try trainer.restore(from: saved)
    guard trainer.step < steps else {
      throw UserError(
        "'\(saved.source)' is at step \(trainer.step) already: --steps \(steps) leaves nothing to train (ask for more)")
    }
    var lines = ["resumed from \(saved.source) after step \(trainer.step)"]
    if planned != steps {
      lines.append(
        "note: the cosine schedule is re-derived for \(steps) steps (the checkpoint's run planned \(planned)): "
          + "this is not the run --steps \(steps) makes from the start")
    }
    return lines
  }

  /// A recorded option as one command-line word: "--flag=value" (one word: a value may start with "--"), and an
  /// on/off flag as itself or its "--no-" form (a flag takes no value).
  static func argument(_ option: (flag: String, value: String)) -> String {
    switch option.value {
    case "true": return option.flag
    case "false": return "--no-" + option.flag.dropFirst(2)
    default: return option.flag + "=" + option.value
    }
  }

  /// This subcommand's arguments as the user typed them: without the program, and without the subcommand's name
  /// when it was given (it is the default subcommand, so it may not have been).
  static func commandLineArguments() -> [String] {
    var arguments = Array(CommandLine.arguments.dropFirst())
    if arguments.first == configuration.commandName { arguments.removeFirst() }
    return arguments
  }
}
