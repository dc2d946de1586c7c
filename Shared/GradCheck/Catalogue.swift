/// The golden catalogue: every differentiable thing the project teaches, as a case that each stage builds with its
/// own API and the checker compares against finite differences. Stage N must build every case of stages 1...N.
///
/// A case names its inputs (shape, and the domain they are drawn from) and says in words what to compute.
/// The words are the contract: a stage's adapter reads them and builds the expression; the output may be a vector,
/// and the checker tests its whole Jacobian. Shapes follow PyTorch's conventions (a Linear weight is [out, in]).

/// Where a case's input values are drawn from. Draws are seeded by the case name, so every run sees the same inputs.
public enum Domain: Sendable, Equatable {
  /// Uniform in [low, high); differentiated.
  case uniform(Double, Double)
  /// Uniform in [low, high), but at least `kinkMargin` away from each kink (relu at 0, a hinge at 1, ...), so that
  /// finite differences never straddle a point where the function is not differentiable; differentiated.
  case uniformAvoiding(Double, Double, kinks: [Double])
  /// Uniform in [low, high), every element at least `kinkMargin` from every other, so that a max has no ties
  /// (a tie is a kink: which element gets the gradient flips); differentiated.
  case distinct(Double, Double)
  /// Class labels 0..<k stored as doubles; held fixed (not differentiated).
  case classes(Int)
  /// Labels -1 or +1; held fixed (not differentiated).
  case signs

  /// Whether the checker perturbs and compares this input.
  public var isDifferentiable: Bool {
    switch self {
    case .uniform, .uniformAvoiding, .distinct: return true
    case .classes, .signs: return false
    }
  }
}

/// How far a drawn input stays from a kink.
public let kinkMargin = 1e-3

/// One input of a case.
public struct InputSpec: Sendable {
  public let name: String
  /// The shape; [] is a scalar. Values are passed flattened, row-major.
  public let shape: [Int]
  public let domain: Domain

  public init(_ name: String, _ shape: [Int], _ domain: Domain) {
    self.name = name
    self.shape = shape
    self.domain = domain
  }

  public var count: Int { shape.reduce(1, *) }
}

/// One case of the catalogue.
public struct GradCase: Sendable {
  public let name: String
  /// The stage that introduces it; stages after it must keep building it.
  public let stage: Int
  public let inputs: [InputSpec]
  /// What to compute, in words.
  public let expression: String

  public init(_ name: String, stage: Int, inputs: [InputSpec], _ expression: String) {
    self.name = name
    self.stage = stage
    self.inputs = inputs
    self.expression = expression
  }
}

private let anyReal = Domain.uniform(-2, 2)
private let positive = Domain.uniform(0.5, 2)

/// The catalogue, in the order stages introduce the cases.
public let catalogue: [GradCase] = [
  // MARK: - Stage 1: scalar ops
  GradCase("add", stage: 1, inputs: [.init("x", [], anyReal), .init("y", [], anyReal)], "x + y"),
  GradCase("sub", stage: 1, inputs: [.init("x", [], anyReal), .init("y", [], anyReal)], "x - y"),
  GradCase("mul", stage: 1, inputs: [.init("x", [], anyReal), .init("y", [], anyReal)], "x * y"),
  GradCase("div", stage: 1, inputs: [.init("x", [], anyReal), .init("y", [], positive)], "x / y"),
  GradCase("neg", stage: 1, inputs: [.init("x", [], anyReal)], "-x"),
  GradCase("pow_real", stage: 1, inputs: [.init("x", [], positive)], "x.pow(2.5)"),
  GradCase("pow_integer", stage: 1, inputs: [.init("x", [], anyReal)], "x.pow(3) (also defined for x < 0)"),
  GradCase("pow_negative", stage: 1, inputs: [.init("x", [], positive)], "x.pow(-1.5)"),
  GradCase("exp", stage: 1, inputs: [.init("x", [], anyReal)], "x.exp()"),
  GradCase("log", stage: 1, inputs: [.init("x", [], positive)], "x.log()"),
  GradCase("tanh", stage: 1, inputs: [.init("x", [], anyReal)], "x.tanh()"),
  GradCase("relu", stage: 1, inputs: [.init("x", [], .uniformAvoiding(-2, 2, kinks: [0]))], "x.relu()"),
  GradCase("sigmoid", stage: 1, inputs: [.init("x", [], .uniform(-6, 6))], "x.sigmoid()"),
  GradCase("sum", stage: 1, inputs: [.init("x", [5], anyReal)], "sum of the five elements of x"),
  GradCase(
    "constant_left", stage: 1, inputs: [.init("x", [], positive)],
    "(2 + x) * (3 - x) + 4 * x + 1 / x, every constant a plain number on the left"),
  GradCase(
    "constant_right", stage: 1, inputs: [.init("x", [], positive)],
    "(x + 2) * (x - 3) + x * 4 + x / 5 - x.pow(2) / 7, every constant a plain number on the right"),

  // MARK: - Stage 1: graphs that test accumulation
  GradCase("reuse", stage: 1, inputs: [.init("x", [], anyReal)], "x * x + x (x feeds three edges)"),
  GradCase(
    "diamond", stage: 1, inputs: [.init("x", [], .uniform(-1, 1)), .init("y", [], .uniform(-1, 1))],
    "a = x * y; a.tanh() * a.exp() + y (a feeds two branches that meet again)"),
  GradCase(
    "micrograd_sanity", stage: 1, inputs: [.init("x", [], .uniform(-5, -1))],
    """
    micrograd's first test: z = 2 * x + 2 + x; q = z.relu() + z * x; h = (z * z).relu(); y = h + q + q * x
    (x in [-5, -1] keeps z = 3x + 2 away from relu's kink)
    """),
  GradCase(
    "micrograd_more_ops", stage: 1, inputs: [.init("a", [], .uniform(-5, -3)), .init("b", [], .uniform(1.5, 2.5))],
    """
    micrograd's second test: c = a + b; d = a * b + b.pow(3); c = c + c + 1; c = c + 1 + c + (-a);
    d = d + d * 2 + (b + a).relu(); d = d + 3 * d + (b - a).relu(); e = c - d; f = e.pow(2); g = f / 2;
    g = g + 10 / f; output g (the ranges keep b + a < 0 and b - a > 0, away from relu's kink)
    """),

  // MARK: - Stage 1: neurons, networks and losses
  GradCase(
    "neuron", stage: 1,
    inputs: [.init("w", [3], .uniform(-1, 1)), .init("b", [], .uniform(-1, 1)), .init("x", [3], .uniform(-1, 1))],
    "tanh(sum_i w[i] * x[i] + b)"),
  GradCase(
    "mlp_bce", stage: 1,
    inputs: [
      .init("w1", [4, 2], .uniform(-1, 1)), .init("b1", [4], .uniform(-0.5, 0.5)),
      .init("w2", [4, 4], .uniform(-1, 1)), .init("b2", [4], .uniform(-0.5, 0.5)),
      .init("w3", [1, 4], .uniform(-1, 1)), .init("b3", [1], .uniform(-0.5, 0.5)),
      .init("x", [3, 2], .uniform(-2, 2)), .init("labels", [3], .classes(2)),
    ],
    """
    an MLP 2-4-4-1 with tanh hidden layers and a linear output (layer k computes wk @ input + bk, wk is [out, in]),
    applied to each row of x; the loss is the mean binary cross-entropy of the three logits against labels
    """),
  GradCase(
    "hinge_loss", stage: 1,
    inputs: [.init("scores", [4], .uniformAvoiding(-3, 3, kinks: [-1, 1])), .init("labels", [4], .signs)],
    "micrograd's max-margin loss: mean over i of relu(1 - labels[i] * scores[i])"),
  GradCase(
    "mse_loss", stage: 1, inputs: [.init("predictions", [4], anyReal), .init("targets", [4], anyReal)],
    "mean over i of (predictions[i] - targets[i]).pow(2)"),
  GradCase(
    "bce_with_logits", stage: 1,
    inputs: [.init("logits", [4], .uniform(-30, 30)), .init("labels", [4], .classes(2))],
    """
    mean over i of the binary cross-entropy of sigmoid(logits[i]) against labels[i], in the stable form
    max(z, 0) - z * y + log(1 + exp(-|z|)) (logits as large as 30 must not overflow)
    """),
  GradCase(
    "l2_penalty", stage: 1, inputs: [.init("p", [6], anyReal)], "1e-2 * sum of p[i] * p[i] (weight decay as a loss)"),
  // MARK: - Stage 2: broadcasting
  GradCase(
    "broadcast_add_column_row", stage: 2, inputs: [.init("x", [3, 1], anyReal), .init("y", [1, 4], anyReal)],
    "x + y, broadcast to [3, 4]"),
  GradCase(
    "broadcast_add_vector", stage: 2, inputs: [.init("x", [2, 3], anyReal), .init("y", [3], anyReal)],
    "x + y, y added to every row"),
  GradCase(
    "broadcast_sub_column", stage: 2, inputs: [.init("x", [2, 3], anyReal), .init("y", [2, 1], anyReal)],
    "x - y, y subtracted from every column"),
  GradCase(
    "broadcast_mul_3d", stage: 2, inputs: [.init("x", [2, 1, 4], anyReal), .init("y", [3, 1], anyReal)],
    "x * y, broadcast to [2, 3, 4]"),
  GradCase(
    "broadcast_div", stage: 2, inputs: [.init("x", [2, 3], anyReal), .init("y", [3], positive)],
    "x / y, every row divided by y"),

  // MARK: - Stage 2: elementwise functions on tensors
  GradCase("sqrt", stage: 2, inputs: [.init("x", [4], positive)], "x.sqrt() elementwise"),
  GradCase("gelu", stage: 2, inputs: [.init("x", [6], .uniform(-3, 3))], "GELU, tanh form, elementwise"),

  // MARK: - Stage 2: reductions
  GradCase("sum_axis0", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)], "x.sum(axis: 0) -> [3, 4]"),
  GradCase(
    "sum_axis1_keepdims", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)],
    "x.sum(axis: 1, keepDims: true) -> [2, 1, 4]"),
  GradCase("sum_axis2", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)], "x.sum(axis: 2) -> [2, 3]"),
  GradCase("sum_axes02", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)], "x.sum(axes: [0, 2]) -> [3]"),
  GradCase("sum_all", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)], "x.sum() -> []"),
  GradCase("mean_axis0", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)], "x.mean(axis: 0) -> [3, 4]"),
  GradCase(
    "mean_axis1_keepdims", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)],
    "x.mean(axis: 1, keepDims: true) -> [2, 1, 4]"),
  GradCase("mean_axis2", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)], "x.mean(axis: 2) -> [2, 3]"),
  GradCase("mean_all", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)], "x.mean() -> []"),
  GradCase("max_axis0", stage: 2, inputs: [.init("x", [2, 3, 4], .distinct(-2, 2))], "x.max(axis: 0) -> [3, 4]"),
  GradCase(
    "max_axis1_keepdims", stage: 2, inputs: [.init("x", [2, 3, 4], .distinct(-2, 2))],
    "x.max(axis: 1, keepDims: true) -> [2, 1, 4]"),
  GradCase("max_axis2", stage: 2, inputs: [.init("x", [2, 3, 4], .distinct(-2, 2))], "x.max(axis: 2) -> [2, 3]"),
  GradCase("max_all", stage: 2, inputs: [.init("x", [2, 3, 4], .distinct(-2, 2))], "x.max() -> []"),

  // MARK: - Stage 2: matrix products
  GradCase("matmul_2d", stage: 2, inputs: [.init("a", [3, 4], anyReal), .init("b", [4, 5], anyReal)], "a @ b"),
  GradCase(
    "matmul_batched", stage: 2, inputs: [.init("a", [2, 3, 4], anyReal), .init("b", [2, 4, 5], anyReal)],
    "a @ b, one product per batch"),
  GradCase(
    "matmul_broadcast", stage: 2, inputs: [.init("a", [2, 3, 4], anyReal), .init("b", [4, 5], anyReal)],
    "a @ b, the one b used by both batches"),
  GradCase(
    "matmul_batch_broadcast", stage: 2, inputs: [.init("a", [2, 1, 3, 4], anyReal), .init("b", [3, 4, 2], anyReal)],
    "a @ b, batch axes [2, 1] and [3] broadcast to [2, 3]"),

  // MARK: - Stage 2: softmax, selection and shapes
  GradCase("softmax_axis1", stage: 2, inputs: [.init("x", [3, 5], anyReal)], "x.softmax(axis: 1)"),
  GradCase("softmax_axis0", stage: 2, inputs: [.init("x", [3, 5], anyReal)], "x.softmax(axis: 0)"),
  GradCase("log_softmax_axis1", stage: 2, inputs: [.init("x", [3, 5], anyReal)], "x.logSoftmax(axis: 1)"),
  GradCase(
    "log_softmax_middle_axis", stage: 2, inputs: [.init("x", [2, 3, 2], anyReal)],
    "x.logSoftmax(axis: 1) of a [2, 3, 2]"),
  GradCase(
    "gather_rows", stage: 2, inputs: [.init("table", [5, 3], anyReal), .init("indices", [7], .classes(5))],
    "rows of table picked by the indices (7 picks of 5 rows: some repeat, and their gradients add up)"),
  GradCase(
    "where", stage: 2,
    inputs: [.init("condition", [3, 4], .classes(2)), .init("a", [3, 4], anyReal), .init("b", [1, 4], anyReal)],
    "where(condition, a, b): a where the condition is 1, else b (b broadcast over rows)"),
  GradCase(
    "masked_fill", stage: 2, inputs: [.init("x", [3, 4], anyReal), .init("mask", [3, 4], .classes(2))],
    "x.maskedFill(mask, value: -5)"),
  GradCase(
    "reshape_permute", stage: 2, inputs: [.init("x", [2, 3, 4], anyReal)],
    "x.permute([2, 0, 1]).reshape([4, 6]) * w, w[i] = i + 1 (a fixed weight per element, so order matters)"),
  GradCase("transpose", stage: 2, inputs: [.init("x", [3, 4], anyReal)], "x.transposed() * w, w[i] = i + 1"),
  GradCase("slice_rows", stage: 2, inputs: [.init("x", [5, 3], anyReal)], "x[1..<4] * w, w[i] = i + 1"),
  GradCase(
    "concatenate", stage: 2, inputs: [.init("x", [2, 3], anyReal), .init("y", [2, 2], anyReal)],
    "concatenate([x, y], axis: 1) * w, w[i] = i + 1"),
  GradCase(
    "split", stage: 2, inputs: [.init("x", [2, 6], anyReal)],
    "x.split([2, 4], axis: 1): first piece * 2 concatenated with the second piece * 3 along axis 1"),

  // MARK: - Stage 2: a network
  GradCase(
    "mlp_softmax_cross_entropy", stage: 2,
    inputs: [
      .init("w1", [5, 3], .uniform(-1, 1)), .init("b1", [5], .uniform(-0.5, 0.5)),
      .init("w2", [3, 5], .uniform(-1, 1)), .init("b2", [3], .uniform(-0.5, 0.5)),
      .init("x", [4, 3], .uniform(-2, 2)), .init("labels", [4], .classes(3)),
    ],
    "an MLP 3-5-3 with a tanh hidden layer (wk is [out, in]) on the rows of x; mean softmax cross-entropy"),
  // MARK: - Stage 3: layers and losses
  GradCase(
    "linear", stage: 3,
    inputs: [.init("x", [4, 3], anyReal), .init("weight", [5, 3], anyReal), .init("bias", [5], anyReal)],
    "Linear: x @ weight^T + bias, weight [out, in] as PyTorch stores it"),
  GradCase(
    "linear_no_bias", stage: 3, inputs: [.init("x", [2, 4, 3], anyReal), .init("weight", [5, 3], anyReal)],
    "Linear without bias on a [2, 4, 3] input: x @ weight^T over the last axis"),
  GradCase(
    "embedding", stage: 3, inputs: [.init("table", [6, 4], anyReal), .init("ids", [2, 5], .classes(6))],
    "Embedding: the rows of table for ids [2, 5] -> [2, 5, 4] (10 ids of 6 rows: some repeat)"),
  GradCase(
    "layer_norm", stage: 3,
    inputs: [.init("x", [3, 5], anyReal), .init("gamma", [5], .uniform(0.5, 1.5)), .init("beta", [5], anyReal)],
    "LayerNorm over the last axis, eps 1e-5: (x - mean) / sqrt(var + eps) * gamma + beta"),
  GradCase(
    "layer_norm_no_affine", stage: 3, inputs: [.init("x", [2, 3, 4], anyReal)],
    "LayerNorm without gamma and beta, eps 1e-5, times w (w[i] = i + 1, so the output is not symmetric)"),
  GradCase(
    "dropout_eval", stage: 3, inputs: [.init("x", [3, 4], anyReal)],
    "Dropout(p = 0.5) in evaluation mode (the identity), times w[i] = i + 1"),
  GradCase(
    "dropout_fixed_mask", stage: 3, inputs: [.init("x", [3, 4], anyReal), .init("mask", [3, 4], .classes(2))],
    "dropout with a given 0/1 mask and p = 0.5: x * mask / (1 - p)"),
  GradCase(
    "cross_entropy", stage: 3, inputs: [.init("logits", [4, 5], anyReal), .init("labels", [4], .classes(5))],
    "cross-entropy of softmax(logits) against labels, averaged over rows"),
  GradCase(
    "cross_entropy_ignore_index", stage: 3,
    inputs: [.init("logits", [5, 4], anyReal), .init("labels", [5], .classes(4))],
    "cross-entropy with ignoreIndex -100, where labels[1] and labels[3] are replaced by -100 (averaged over the 3 others)"
  ),
  GradCase(
    "cross_entropy_label_smoothing", stage: 3,
    inputs: [.init("logits", [4, 5], anyReal), .init("labels", [4], .classes(5))],
    "cross-entropy with label smoothing 0.1: target 0.9 on the label plus 0.02 on every class"),
  GradCase(
    "mlp3_cross_entropy", stage: 3,
    inputs: [
      .init("w1", [6, 4], .uniform(-1, 1)), .init("b1", [6], .uniform(-0.5, 0.5)),
      .init("w2", [5, 6], .uniform(-1, 1)), .init("b2", [5], .uniform(-0.5, 0.5)),
      .init("w3", [3, 5], .uniform(-1, 1)), .init("b3", [3], .uniform(-0.5, 0.5)),
      .init("x", [4, 4], .uniform(-2, 2)), .init("labels", [4], .classes(3)),
    ],
    "Sequential(Linear 4-6, GELU, LayerNorm(6), Linear 6-5, Tanh, Linear 5-3) on x, then cross-entropy"),
  // MARK: - Stage 4: attention and the Transformer
  GradCase(
    "attention", stage: 4,
    inputs: [
      .init("q", [1, 2, 3, 4], anyReal), .init("k", [1, 2, 3, 4], anyReal), .init("v", [1, 2, 3, 4], anyReal),
    ],
    "scaled dot-product attention, no mask: softmax(q k^T / sqrt(4)) v over [batch, heads, positions, head width]"),
  GradCase(
    "attention_causal", stage: 4,
    inputs: [
      .init("q", [2, 2, 3, 4], anyReal), .init("k", [2, 2, 3, 4], anyReal), .init("v", [2, 2, 3, 4], anyReal),
    ],
    "attention with the causal mask: position i attends to positions 0...i"),
  GradCase(
    "attention_padding", stage: 4,
    inputs: [
      .init("q", [2, 1, 3, 4], anyReal), .init("k", [2, 1, 3, 4], anyReal), .init("v", [2, 1, 3, 4], anyReal),
    ],
    "attention with a key padding mask: the last key of the second sequence is padding"),
  GradCase(
    "attention_one_query", stage: 4,
    inputs: [
      .init("q", [1, 2, 1, 4], anyReal), .init("k", [1, 2, 3, 4], anyReal), .init("v", [1, 2, 3, 4], anyReal),
    ],
    "one new query against three cached keys with the causal mask (a KV-cache step)"),
  GradCase(
    "attention_dropout", stage: 4,
    inputs: [
      .init("q", [1, 2, 3, 4], anyReal), .init("k", [1, 2, 3, 4], anyReal), .init("v", [1, 2, 3, 4], anyReal),
    ],
    """
    causal attention with dropout p = 0.5 on the weights, the mask drawn afresh from seed 5 at every evaluation (so
    one fixed mask): the dropped weights' gradients are zero, the kept ones scaled by 1 / (1 - p)
    """),
  GradCase(
    "multi_head_attention", stage: 4,
    inputs: [
      .init("x", [2, 3, 8], anyReal), .init("qkv_weight", [24, 8], .uniform(-0.5, 0.5)),
      .init("qkv_bias", [24], anyReal),
      .init("projection_weight", [8, 8], .uniform(-0.5, 0.5)), .init("projection_bias", [8], anyReal),
    ],
    "causal multi-head self-attention with 2 heads: fused qkv projection, split, attend, merge, output projection"),
  GradCase(
    "transformer_block", stage: 4,
    inputs: [.init("x", [1, 3, 8], anyReal), .init("parameters", [872], .uniform(-0.5, 0.5))],
    """
    a pre-LayerNorm block (width 8, 2 heads, causal, biases): x + attn(ln1(x)), then x + mlp(ln2(x)); its parameters
    are consecutive slices of `parameters` in the order norm1 (gamma, beta), attention qkv (weight, bias), attention
    projection (weight, bias), norm2 (gamma, beta), expand (weight, bias), contract (weight, bias)
    """),
  GradCase(
    "gpt_tiny", stage: 4,
    inputs: [
      .init("parameters", [1832], .uniform(-0.5, 0.5)), .init("tokens", [2, 4], .classes(5)),
      .init("targets", [2, 4], .classes(5)),
    ],
    """
    a 2-layer GPT (vocabulary 5, context 4, width 8, 2 heads, biases, learned positions, tied head) whose
    parameters are consecutive slices of `parameters` (token embedding, position embedding, each block as in
    transformer_block, final norm gamma and beta); the mean cross-entropy of its logits against the targets
    """),
  GradCase(
    "gpt_logits", stage: 4,
    inputs: [.init("parameters", [3660], .uniform(-0.5, 0.5)), .init("tokens", [1, 5], .classes(7))],
    "the logits [1, 5, 7] of a 2-layer GPT (vocabulary 7, context 5, width 12, 2 heads, no biases, tied head), sliced as in gpt_tiny"
  ),
  // MARK: - Stage 5: BERT
  GradCase(
    "gelu_erf", stage: 5, inputs: [.init("x", [6], .uniform(-3, 3))],
    "GELU in its exact form, x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), elementwise"),
  GradCase(
    "bert_pretraining", stage: 5,
    inputs: [
      .init("parameters", [1193], .uniform(-0.5, 0.5)), .init("tokens", [2, 5], .classes(7)),
      .init("targets", [4], .classes(7)),
    ],
    """
    a 1-layer post-LN BERT (vocabulary 7, context 6, width 8, 2 heads, erf GELU, LayerNorm eps 1e-12) whose
    parameters are consecutive slices of `parameters` (token, position and segment embeddings, embedding norm,
    the block as in transformer_block, MLM transform and its norm, decoder bias, pooler, NSP classifier) on tokens
    [2, 5] with segments 0 0 0 1 1 in each row and the last position of the second row padding; the MLM
    cross-entropy at flat positions 1, 3, 6, 8 against the targets plus the NSP cross-entropy against labels 0, 1
    """),
  // MARK: - Stage 6: fine-tuning
  GradCase(
    "lora_linear", stage: 6,
    inputs: [
      .init("x", [2, 3, 4], anyReal), .init("weight", [5, 4], .uniform(-0.5, 0.5)), .init("bias", [5], anyReal),
      .init("a", [2, 4], .uniform(-0.5, 0.5)), .init("b", [5, 2], .uniform(-0.5, 0.5)),
    ],
    """
    a Linear 4 -> 5 with a LoRA of rank 2 and alpha 4 (scale 2): x W^T + b + 2 (x A^T) B^T (B drawn, not zero, so
    that A's gradient is not zero either)
    """),
  GradCase(
    "bottleneck_adapter", stage: 6,
    inputs: [
      .init("h", [2, 3, 6], anyReal), .init("down_weight", [2, 6], .uniform(-0.5, 0.5)),
      .init("down_bias", [2], anyReal), .init("up_weight", [6, 2], .uniform(-0.5, 0.5)), .init("up_bias", [6], anyReal),
    ],
    "a bottleneck adapter, width 6 through 2: h + up(GELU(down(h))) (up drawn, not zero)"),
  GradCase(
    "ia3_attention", stage: 6,
    inputs: [
      .init("x", [1, 3, 8], anyReal), .init("qkv_weight", [24, 8], .uniform(-0.5, 0.5)),
      .init("projection_weight", [8, 8], .uniform(-0.5, 0.5)), .init("key_scale", [8], .uniform(0.5, 1.5)),
      .init("value_scale", [8], .uniform(0.5, 1.5)),
    ],
    """
    causal multi-head self-attention (2 heads, no biases) whose keys and values are scaled feature by feature by
    key_scale and value_scale after the qkv projection (IA3)
    """),
  GradCase(
    "prefix_attention", stage: 6,
    inputs: [
      .init("x", [2, 3, 8], anyReal), .init("qkv_weight", [24, 8], .uniform(-0.5, 0.5)),
      .init("projection_weight", [8, 8], .uniform(-0.5, 0.5)), .init("table", [2, 16], anyReal),
    ],
    """
    causal multi-head self-attention (2 heads, no biases) with a prefix of 2 positions: the table [2, 1 x 2 x 8]
    holds the prefix keys and values of the one layer, which stand before the keys and values of both rows of x
    """),
  GradCase(
    "gpt_prompt", stage: 6,
    inputs: [
      .init("parameters", [3660], .uniform(-0.5, 0.5)), .init("prompt", [2, 12], anyReal),
      .init("tokens", [1, 3], .classes(7)),
    ],
    """
    the GPT of gpt_logits with a prompt of 2 learned embeddings before its 3 tokens (positions 0, 1 for the prompt,
    2 to 4 for the tokens): the logits [1, 3, 7] of the tokens
    """),
]

/// The catalogue cases a stage must build: those of stages 1...stage.
public func cases(upToStage stage: Int) -> [GradCase] {
  catalogue.filter { $0.stage <= stage }
}
