/// Modules: the building blocks of a network, as PyTorch's nn.Module. A module owns parameters and other modules;
/// the model is a tree of them, and the tree is what an optimizer, a checkpoint and train/eval mode walk.

// MARK: - Module

/// A part of a network. Parameters are discovered by reflection: every stored property that is a tensor
/// requiring grad is a parameter named by the property; a property that is a module, or an array of modules, is
/// walked in turn with its name as a prefix ("layers.1.weight"). Nothing has to be registered by hand, as in
/// PyTorch, where assigning a Parameter to a module attribute registers it. The price is that reflection is slow,
/// so a training loop asks once (the optimizer keeps the list), not every step.
public protocol Module<Scalar>: AnyObject {
  associatedtype Scalar: TensorScalar
  /// Training mode (dropout active) or evaluation mode. Set the whole tree with `train()` and `eval()`.
  var isTraining: Bool { get set }
}

extension Module {
  /// Every parameter with its dotted name, in declaration order.
  public func namedParameters() -> [(name: String, tensor: Tensor<Scalar>)] {
    var result: [(name: String, tensor: Tensor<Scalar>)] = []
    for (name, value) in namedChildren() {
      if let tensor = value as? Tensor<Scalar> {
        if tensor.requiresGrad && tensor.isLeaf { result.append((name, tensor)) }
      } else if let module = value as? any Module<Scalar> {
        result += module.namedParameters().map { (name + "." + $0.name, $0.tensor) }
      }
    }
    return result
  }

  /// Every parameter, in the order of `namedParameters()`.
  public func parameters() -> [Tensor<Scalar>] { namedParameters().map(\.tensor) }

  /// This module and every module below it.
  public func modules() -> [any Module<Scalar>] {
    [self] + namedChildren().flatMap { ($0.value as? any Module<Scalar>)?.modules() ?? [] }
  }

  /// Stored properties that are tensors or modules, with arrays of modules spread out as "name.0", "name.1", ...
  private func namedChildren() -> [(name: String, value: Any)] {
    Mirror(reflecting: self).children.flatMap { child -> [(name: String, value: Any)] in
      guard let label = child.label else { return [] }
      if let list = child.value as? [any Module<Scalar>] {
        return list.enumerated().map { ("\(label).\($0)", $1 as Any) }
      }
      return [(label, child.value)]
    }
  }

  /// Forgets every parameter's gradient.
  public func zeroGrad() {
    for p in parameters() { p.zeroGrad() }
  }

  /// How many scalars the module trains.
  public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }

  /// Training mode for the whole tree (dropout drops).
  public func train() { for module in modules() { module.isTraining = true } }

  /// Evaluation mode for the whole tree (dropout is the identity).
  public func eval() { for module in modules() { module.isTraining = false } }
}

/// A module that maps a tensor to a tensor, so that it can stand in a `Sequential`.
///
/// `Sequential` calls its layers through `any Layer<Scalar>`, and a generic method called through an existential
/// runs its unspecialised version, where every element goes through Swift's generic machinery: ten times slower.
/// So each layer's `callAsFunction` asks for Float and Double versions with `@_specialize`, and the ops it calls
/// are specialised with it.
public protocol Layer<Scalar>: Module {
  func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar>
}

// MARK: - Containers and activations

/// Layers applied one after another.
public final class Sequential<Scalar: TensorScalar>: Layer {
  public let layers: [any Layer<Scalar>]
  public var isTraining = true

  public init(_ layers: [any Layer<Scalar>]) { self.layers = layers }

  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
    layers.reduce(x) { input, layer in layer(input) }
  }
}

/// max(x, 0) as a layer.
public final class ReLU<Scalar: TensorScalar>: Layer {
  public var isTraining = true
  public init() {}
  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> { x.relu() }
}

/// GELU (tanh form) as a layer.
public final class GELU<Scalar: TensorScalar>: Layer {
  public var isTraining = true
  public init() {}
  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> { x.gelu() }
}

/// tanh as a layer.
public final class Tanh<Scalar: TensorScalar>: Layer {
  public var isTraining = true
  public init() {}
  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> { x.tanh() }
}
