"""Per-device bytes of parameters and AdamW moments for XLM-R large under FSDP.

No weights and no devices: the DualEncoder (configs/models/xlm_roberta_large.py, one shared
tower) and the optimizer state of `hybrid_jax.optimizer.make_optimizer` are built abstractly
(`nnx.eval_shape`, `jax.eval_shape`), and each leaf's per-device shard shape comes from
`sharding.state_shardings` on an `AbstractMesh` with the given fsdp size (the data axis does not
change parameter bytes).
Gradients (the size of the parameters, sharded alike once reduced) and activations are not
counted.

  PYTHONPATH=. python benchmarks/fsdp_param_bytes.py [--fsdp 1,8,32,256]
  PYTHONPATH=. python benchmarks/fsdp_param_bytes.py --smoke   # the tiny model, fsdp 1 and 8
"""

import argparse

import jax
import numpy as np
from flax import nnx
from jax.sharding import AbstractMesh, AxisType

from hybrid_jax import config_lib
from hybrid_jax import optimizer as optimizer_lib
from hybrid_jax import sharding
from hybrid_jax.models.config import EncoderConfig
from hybrid_jax.models.encoder import DualEncoder


def abstract_state(model_name: str):
  """({'model': params}, optimizer state) as ShapeDtypeStructs, AdamW of the default config."""
  model_config = config_lib.model_preset(model_name)
  abstract_model = nnx.eval_shape(lambda: DualEncoder(
      EncoderConfig.from_model_config(model_config), shared_tower=model_config.shared_tower,
      rngs=nnx.Rngs(0)))
  params = {"model": nnx.to_pure_dict(nnx.split(abstract_model)[1])}
  default = config_lib.default_config()
  optimizer = optimizer_lib.make_optimizer(default.optim, default.train.num_steps)
  return params, jax.eval_shape(optimizer.init, params)


def per_device_bytes(tree, mesh) -> tuple[int, int]:
  """(bytes on one device, bytes of the whole tree) under `sharding.state_shardings`."""
  leaves = jax.tree.leaves(tree)
  shardings = jax.tree.leaves(sharding.state_shardings(mesh, tree))
  local = sum(
      int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize for x, s in zip(leaves, shardings))
  return local, sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--smoke", action="store_true",
                      help="The tiny model at fsdp 1 and 8: the test suite's quick run.")
  parser.add_argument("--model", default="xlm_roberta_large", help="preset in configs/models/")
  parser.add_argument("--fsdp", default="1,8,32,256", help="comma-separated fsdp sizes")
  args = parser.parse_args(argv)
  if args.smoke:
    args.model, args.fsdp = "tiny", "1,8"
  params, opt_state = abstract_state(args.model)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  print(f"model={args.model}: {num_params / 1e6:.1f}M parameters (float32), AdamW mu + nu; "
        f"replicated below FSDP_MIN_PARAM_SIZE={sharding.FSDP_MIN_PARAM_SIZE} elements or 1-D")
  print("| fsdp | params / device | AdamW state / device | total / device | vs fsdp=1 "
        "| replicated part |")
  print("|---:|---:|---:|---:|---:|---:|")
  base = None
  for fsdp in (int(f) for f in args.fsdp.split(",")):
    mesh = AbstractMesh((1, fsdp), sharding.BATCH_AXES, axis_types=(AxisType.Auto,) * 2)
    param_bytes, _ = per_device_bytes(params, mesh)
    opt_bytes, _ = per_device_bytes(opt_state, mesh)
    replicated = sum(
        int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(params)
        if sharding.param_spec(x.shape, fsdp) == jax.sharding.PartitionSpec())
    total = param_bytes + opt_bytes
    base = base or total
    mib = lambda b: f"{b / 2**20:,.1f} MiB"
    print(f"| {fsdp} | {mib(param_bytes)} | {mib(opt_bytes)} | {mib(total)} | "
          f"{total / base:.4f} | {mib(replicated)} of params |")


if __name__ == "__main__":
  main()
