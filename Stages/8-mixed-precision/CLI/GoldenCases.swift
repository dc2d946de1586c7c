import GradCheck
import Support

/// The adapter between the golden catalogue (Shared/GradCheck) and this stage: every catalogue case of stages 1
/// to 5, built from tensors. Stage 1's scalar cases are the same expressions on tensors of shape [] or [n].
/// The cases are written once, generic over the element type, so the tests can also run them in Float.

// MARK: - The cases

/// The output of catalogue case `name` on `x`, one tensor per catalogue input, shaped as the catalogue says;
/// nil for a case this stage does not build.
func goldenOutput<S: TensorScalar>(_ name: String, _ x: [Tensor<S>]) -> Tensor<S>? {
  switch name {
  case "add": return x[0] + x[1]
  case "sub": return x[0] - x[1]
  case "mul": return x[0] * x[1]
  case "div": return x[0] / x[1]
  case "neg": return -x[0]
  case "pow_real": return x[0].pow(2.5)
  case "pow_integer": return x[0].pow(3)
  case "pow_negative": return x[0].pow(-1.5)
  case "exp": return x[0].exp()
  case "log": return x[0].log()
  case "tanh": return x[0].tanh()
  case "relu": return x[0].relu()
  case "sigmoid": return x[0].sigmoid()
  case "sum": return x[0].sum()
  case "constant_left": return (2 + x[0]) * (3 - x[0]) + 4 * x[0] + 1 / x[0]
  case "constant_right": return (x[0] + 2) * (x[0] - 3) + x[0] * 4 + x[0] / 5 - x[0].pow(2) / 7
  case "reuse": return x[0] * x[0] + x[0]
  case "diamond":
    let a = x[0] * x[1]
    return a.tanh() * a.exp() + x[1]
  case "micrograd_sanity": return microgradSanity(x[0])
  case "micrograd_more_ops": return microgradMoreOps(x[0], x[1])
  case "neuron": return ((x[0] * x[2]).sum() + x[1]).tanh()
  case "mlp_bce":
    // The catalogue's weights are [out, in], as Linear holds them.
    let model = Sequential<S>([
      Linear(weight: x[0], bias: x[1]), Tanh(), Linear(weight: x[2], bias: x[3]), Tanh(),
      Linear(weight: x[4], bias: x[5]),
    ])
    return bceWithLogitsLoss(logits: model(x[6]).reshape([-1]), labels: x[7])
  case "hinge_loss": return hingeLoss(scores: x[0], labels: x[1])
  case "mse_loss": return mseLoss(x[0], x[1])
  case "bce_with_logits": return bceWithLogitsLoss(logits: x[0], labels: x[1])
  case "l2_penalty": return l2Penalty([x[0]], alpha: 1e-2)

  case "broadcast_add_column_row", "broadcast_add_vector": return x[0] + x[1]
  case "broadcast_sub_column": return x[0] - x[1]
  case "broadcast_mul_3d": return x[0] * x[1]
  case "broadcast_div": return x[0] / x[1]
  case "sqrt": return x[0].sqrt()
  case "gelu": return x[0].gelu()
  case "sum_axis0": return x[0].sum(axis: 0)
  case "sum_axis1_keepdims": return x[0].sum(axis: 1, keepDims: true)
  case "sum_axis2": return x[0].sum(axis: 2)
  case "sum_axes02": return x[0].sum(axes: [0, 2])
  case "sum_all": return x[0].sum()
  case "mean_axis0": return x[0].mean(axis: 0)
  case "mean_axis1_keepdims": return x[0].mean(axis: 1, keepDims: true)
  case "mean_axis2": return x[0].mean(axis: 2)
  case "mean_all": return x[0].mean()
  case "max_axis0": return x[0].max(axis: 0)
  case "max_axis1_keepdims": return x[0].max(axis: 1, keepDims: true)
  case "max_axis2": return x[0].max(axis: 2)
  case "max_all": return x[0].max()
  case "matmul_2d", "matmul_batched", "matmul_broadcast", "matmul_batch_broadcast": return x[0].matmul(x[1])
  case "softmax_axis1": return x[0].softmax(axis: 1)
  case "softmax_axis0": return x[0].softmax(axis: 0)
  case "log_softmax_axis1": return x[0].logSoftmax(axis: 1)
  case "log_softmax_middle_axis": return x[0].logSoftmax(axis: 1)
  case "gather_rows": return x[0].gatherRows(labels(x[1]))
  case "where": return Tensor.where(x[0], x[1], x[2])
  case "masked_fill": return x[0].maskedFill(x[1], value: -5)
  case "reshape_permute": return x[0].permute([2, 0, 1]).reshape([4, 6]) * ramp([4, 6])
  case "transpose": return x[0].transposed() * ramp([4, 3])
  case "slice_rows": return x[0][1..<4] * ramp([3, 3])
  case "concatenate": return Tensor.concatenate([x[0], x[1]], axis: 1) * ramp([2, 5])
  case "split":
    let pieces = x[0].split([2, 4], axis: 1)
    return Tensor.concatenate([pieces[0] * 2, pieces[1] * 3], axis: 1)
  case "mlp_softmax_cross_entropy":
    let model = Sequential<S>([Linear(weight: x[0], bias: x[1]), Tanh(), Linear(weight: x[2], bias: x[3])])
    return crossEntropyLoss(logits: model(x[4]), labels: labels(x[5]))

  case "linear": return Linear(weight: x[1], bias: x[2])(x[0])
  case "linear_no_bias": return Linear(weight: x[1], bias: nil)(x[0])
  case "embedding": return Embedding(weight: x[0])(labels(x[1]), shape: [2, 5])
  case "layer_norm": return x[0].layerNorm(x[1], x[2], eps: 1e-5)
  case "layer_norm_no_affine": return LayerNorm<S>(4, affine: false)(x[0]) * ramp([2, 3, 4])
  case "dropout_eval":
    let dropout = Dropout<S>(0.5, random: RandomSource(seed: 0))
    dropout.eval()
    return dropout(x[0]) * ramp([3, 4])
  case "dropout_fixed_mask": return x[0].dropout(mask: x[1], p: 0.5)
  case "cross_entropy": return crossEntropyLoss(logits: x[0], labels: labels(x[1]))
  case "cross_entropy_ignore_index":
    var ids = labels(x[1])
    (ids[1], ids[3]) = (-100, -100)
    return crossEntropyLoss(logits: x[0], labels: ids, ignoreIndex: -100)
  case "cross_entropy_label_smoothing": return crossEntropyLoss(logits: x[0], labels: labels(x[1]), labelSmoothing: 0.1)
  case "mlp3_cross_entropy":
    let model = Sequential<S>([
      Linear(weight: x[0], bias: x[1]), GELU(), LayerNorm(6), Linear(weight: x[2], bias: x[3]), Tanh(),
      Linear(weight: x[4], bias: x[5]),
    ])
    return crossEntropyLoss(logits: model(x[6]), labels: labels(x[7]))

  case "attention": return Tensor.attention(x[0], x[1], x[2], causal: false)
  case "attention_causal": return Tensor.attention(x[0], x[1], x[2], causal: true)
  case "attention_padding":
    return Tensor.attention(x[0], x[1], x[2], causal: false, keyPadding: Tensor([0, 0, 0, 0, 0, 1], shape: [2, 3]))
  case "attention_one_query": return Tensor.attention(x[0], x[1], x[2], causal: true)
  case "attention_dropout":
    return Tensor.attention(x[0], x[1], x[2], causal: true, dropout: (p: 0.5, random: RandomSource(seed: 5)))
  case "multi_head_attention":
    let attention = MultiHeadAttention(
      qkv: Linear(weight: x[1], bias: x[2]), projection: Linear(weight: x[3], bias: x[4]), heads: 2, causal: true,
      dropout: nil)
    return attention(x[0])
  case "transformer_block":
    let config = GPTConfig(vocabulary: 5, context: 3, layers: 1, heads: 2, width: 8)
    let block = Block(config, name: "block", random: RandomSource(seed: 0), source: slices(of: x[1]))
    return block(x[0], keyPadding: nil, cache: nil)
  case "gpt_tiny":
    let model = GPT(
      GPTConfig(vocabulary: 5, context: 4, layers: 2, heads: 2, width: 8), random: RandomSource(seed: 0),
      source: slices(of: x[0]))
    let logits = model(labels(x[1]), batch: 2).reshape([-1, 5])
    return crossEntropyLoss(logits: logits, labels: labels(x[2]))
  case "gpt_logits":
    var config = GPTConfig(vocabulary: 7, context: 5, layers: 2, heads: 2, width: 12)
    config.bias = false
    return GPT(config, random: RandomSource(seed: 0), source: slices(of: x[0]))(labels(x[1]))

  case "gelu_erf": return x[0].geluErf()
  case "bert_pretraining":
    var config = BERTConfig(vocabulary: 7, context: 6, layers: 1, heads: 2, width: 8)
    config.norm = .post
    let model = BERT(config, random: RandomSource(seed: 0), source: slices(of: x[0]))
    let hidden = model.encode(
      labels(x[1]), segments: [0, 0, 0, 1, 1, 0, 0, 0, 1, 1], batch: 2,
      keyPadding: Tensor([0, 0, 0, 0, 0, 0, 0, 0, 0, 1], shape: [2, 5]))
    let mlm = crossEntropyLoss(logits: model.maskedLMLogits(hidden, at: [1, 3, 6, 8]), labels: labels(x[2]))
    return mlm + crossEntropyLoss(logits: model.nextSentenceLogits(hidden), labels: [0, 1])

  case "lora_linear":
    let layer = Linear(weight: x[1], bias: x[2])
    layer.lora = LoRA(a: x[3], b: x[4], alpha: 4, dropout: 0, random: RandomSource(seed: 0))
    return layer(x[0])
  case "bottleneck_adapter":
    return BottleneckAdapter(down: Linear(weight: x[1], bias: x[2]), up: Linear(weight: x[3], bias: x[4]))(x[0])
  case "ia3_attention":
    let attention = MultiHeadAttention(
      qkv: Linear(weight: x[1], bias: nil), projection: Linear(weight: x[2], bias: nil), heads: 2, causal: true,
      dropout: nil)
    (attention.keyScale, attention.valueScale) = (x[3], x[4])
    return attention(x[0])
  case "prefix_attention":
    let attention = MultiHeadAttention(
      qkv: Linear(weight: x[1], bias: nil), projection: Linear(weight: x[2], bias: nil), heads: 2, causal: true,
      dropout: nil)
    let prefix = PrefixTuning(GPTConfig(vocabulary: 5, context: 3, layers: 1, heads: 2, width: 8), table: x[3])
    return attention.attend(x[0], keyPadding: nil, cache: nil, prefix: prefix.keysAndValues(batch: 2)[0])
  case "gpt_prompt":
    var config = GPTConfig(vocabulary: 7, context: 5, layers: 2, heads: 2, width: 12)
    config.bias = false
    let model = GPT(config, random: RandomSource(seed: 0), source: slices(of: x[0]))
    model.prompt = PromptTuning(embeddings: x[1])
    return model(labels(x[2]))
  default: return nil
  }
}

/// A parameter source that hands out consecutive slices of one flat tensor, so that a whole model's parameters
/// are one input of a golden case (and the gradient of each lands in its slice).
func slices<S: TensorScalar>(of flat: Tensor<S>) -> ParameterSource<S> {
  var offset = 0
  return { _, shape, _ in
    let count = shape.reduce(1, *)
    precondition(offset + count <= flat.count, "slices: the parameters run past \(flat.count) numbers")
    defer { offset += count }
    return flat[offset..<(offset + count)].reshape(shape)
  }
}

/// A tensor of class labels as the integers they hold.
func labels<S: TensorScalar>(_ x: Tensor<S>) -> [Int] { x.storage.map { Int($0) } }

/// 1, 2, 3, ... in the given shape: a fixed weight per element, so that an output in the wrong order shows.
func ramp<S: TensorScalar>(_ shape: [Int]) -> Tensor<S> {
  Tensor((0..<shape.reduce(1, *)).map { S($0 + 1) }, shape: shape)
}

/// The inputs of a case as leaf tensors in element type S: the ones the checker differentiates require grad.
func goldenLeaves<S: TensorScalar>(_ gradCase: GradCase, _ inputs: [[Double]]) -> [Tensor<S>] {
  zip(gradCase.inputs, inputs).map { spec, values in
    Tensor(values.map { S($0) }, shape: spec.shape, requiresGrad: spec.domain.isDifferentiable)
  }
}

// MARK: - The adapter

/// Every catalogue case this stage builds, in Double: the output, and v^T J by one backward pass seeded with v.
public var goldenAdapter: Adapter {
  var adapter: Adapter = [:]
  for gradCase in catalogue
  where noGrad({ goldenOutput(gradCase.name, goldenLeaves(gradCase, drawInputs(for: gradCase)) as [Tensor<Double>]) })
    != nil
  {
    adapter[gradCase.name] = { inputs in
      let leaves: [Tensor<Double>] = goldenLeaves(gradCase, inputs)
      let output = goldenOutput(gradCase.name, leaves)!
      return Evaluation(output: output.storage) { seed in
        for leaf in leaves { leaf.zeroGrad() }
        output.backward(gradient: seed)
        return leaves.map { $0.gradStorage ?? [Double](repeating: 0, count: $0.count) }
      }
    }
  }
  return adapter
}
