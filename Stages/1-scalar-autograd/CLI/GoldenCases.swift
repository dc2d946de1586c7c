import GradCheck
import Support

/// The adapter between the golden catalogue (Shared/GradCheck) and this stage: every catalogue case of stage 1,
/// built from `Value`s. `stage1 gradcheck` and the tests both run it.

// MARK: - Building a case

/// A case whose leaves are made by the builder itself (e.g. a model's own parameters): `build` returns the leaf
/// for every input element, in the catalogue's order, and the outputs.
func graphCase(_ build: @escaping ([[Double]]) -> (leaves: [[Value]], outputs: [Value])) -> CaseBuilder {
  { inputs in
    let (leaves, outputs) = build(inputs)
    return Evaluation(output: outputs.map(\.data)) { seed in
      // v^T J, one backward pass per output: y_j.backward() gives row j of the Jacobian in the leaves' grads.
      var total = leaves.map { [Double](repeating: 0, count: $0.count) }
      for (j, output) in outputs.enumerated() where seed[j] != 0 {
        for leaf in leaves.joined() { leaf.grad = 0 }
        output.backward()
        for i in leaves.indices {
          for k in leaves[i].indices { total[i][k] += seed[j] * leaves[i][k].grad }
        }
      }
      return total
    }
  }
}

/// A case over fresh leaves, one `Value` per input element.
func valueCase(_ body: @escaping ([[Value]]) -> [Value]) -> CaseBuilder {
  graphCase { inputs in
    let leaves = inputs.map { $0.map { Value($0) } }
    return (leaves, body(leaves))
  }
}

/// A case of one scalar input and one scalar output.
func unaryCase(_ f: @escaping (Value) -> Value) -> CaseBuilder { valueCase { [f($0[0][0])] } }

/// A case of two scalar inputs and one scalar output.
func binaryCase(_ f: @escaping (Value, Value) -> Value) -> CaseBuilder { valueCase { [f($0[0][0], $0[1][0])] } }

// MARK: - The adapter

/// Every catalogue case of stage 1, by name.
public var goldenAdapter: Adapter {
  [
    "add": binaryCase(+),
    "sub": binaryCase(-),
    "mul": binaryCase(*),
    "div": binaryCase(/),
    "neg": unaryCase { -$0 },
    "pow_real": unaryCase { $0.pow(2.5) },
    "pow_integer": unaryCase { $0.pow(3) },
    "pow_negative": unaryCase { $0.pow(-1.5) },
    "exp": unaryCase { $0.exp() },
    "log": unaryCase { $0.log() },
    "tanh": unaryCase { $0.tanh() },
    "relu": unaryCase { $0.relu() },
    "sigmoid": unaryCase { $0.sigmoid() },
    "sum": valueCase { [Value.sum($0[0])] },
    "constant_left": unaryCase { x in (2 + x) * (3 - x) + 4 * x + 1 / x },
    "constant_right": unaryCase { x in (x + 2) * (x - 3) + x * 4 + x / 5 - x.pow(2) / 7 },
    "reuse": unaryCase { x in x * x + x },
    "diamond": binaryCase { x, y in
      let a = x * y
      return a.tanh() * a.exp() + y
    },
    "micrograd_sanity": unaryCase(microgradSanity),
    "micrograd_more_ops": binaryCase(microgradMoreOps),
    "neuron": valueCase { v in [(Value.sum(zip(v[0], v[2]).map { $0 * $1 }) + v[1][0]).tanh()] },
    "mlp_bce": graphCase(mlpBCE),
    "hinge_loss": valueCase { v in [hingeLoss(scores: v[0], labels: v[1].map(\.data))] },
    "mse_loss": valueCase { v in [mseLoss(v[0], v[1])] },
    "bce_with_logits": valueCase { v in [bceWithLogitsLoss(logits: v[0], labels: v[1].map(\.data))] },
    "l2_penalty": valueCase { v in [l2Penalty(v[0], alpha: 1e-2)] },
  ]
}

/// The `mlp_bce` case on this stage's own MLP: its parameters take the case's weights, and are the leaves.
private func mlpBCE(_ inputs: [[Double]]) -> (leaves: [[Value]], outputs: [Value]) {
  var rng = SeededRNG(seed: 0)
  let model = MLP(inputs: 2, sizes: [4, 4, 1], activation: .tanh, rng: &rng)
  var leaves: [[Value]] = []
  for (k, layer) in model.layers.enumerated() {
    let weights = layer.neurons.flatMap(\.weights)  // row-major [out, in], as the catalogue lays them out
    let biases = layer.neurons.map(\.bias)
    for (p, x) in zip(weights, inputs[2 * k]) { p.data = x }
    for (p, x) in zip(biases, inputs[2 * k + 1]) { p.data = x }
    leaves += [weights, biases]
  }
  let x = inputs[6].map { Value($0) }
  let labels = inputs[7].map { Value($0) }
  let logits = (0..<3).map { row in model([x[2 * row], x[2 * row + 1]])[0] }
  return (leaves + [x, labels], [bceWithLogitsLoss(logits: logits, labels: inputs[7])])
}
