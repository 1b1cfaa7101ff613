"""Mesh, batch shardings, assembling a global batch from per-process slices (1 and 2 hosts), and the
FSDP parameter / train-state sharding rule."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, PartitionSpec as P
from tiny_run import free_port, xla_flags

from hybrid_jax import losses, sharding


@pytest.mark.parametrize("num_devices,fsdp", [(1, 1), (4, 1), (8, 2)])
def test_make_mesh_shape_axes_and_devices(num_devices, fsdp):
  mesh = sharding.make_mesh(num_devices, fsdp=fsdp)
  assert dict(mesh.shape) == {sharding.DATA_AXIS: num_devices // fsdp, sharding.FSDP_AXIS: fsdp}
  assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)
  assert sorted(d.id for d in mesh.devices.flat) == sorted(
      d.id for d in jax.devices()[:num_devices])
  assert sharding.num_batch_shards(mesh) == num_devices


@pytest.mark.parametrize("kwargs,match", [(dict(num_devices=9), "num_devices=9"),
                                          (dict(num_devices=0), "num_devices=0"),
                                          (dict(num_devices=8, fsdp=3), "fsdp=3")])
def test_make_mesh_rejects_bad_sizes(kwargs, match):
  with pytest.raises(ValueError, match=match):
    sharding.make_mesh(**kwargs)


def test_check_global_batch():
  mesh = sharding.make_mesh(8)
  assert sharding.check_global_batch(32, mesh) == 4
  for bad in (12, 0):
    with pytest.raises(ValueError, match=f"global_batch_size={bad} must be a positive multiple"):
      sharding.check_global_batch(bad, mesh)


@pytest.mark.parametrize("fsdp", [1, 2])
def test_batch_sharding_gives_each_device_a_contiguous_block_data_major(fsdp):
  mesh = sharding.make_mesh(8, fsdp=fsdp)
  batch = jax.device_put(np.arange(16 * 3).reshape(16, 3), sharding.batch_sharding(mesh))
  shards = {s.device: np.asarray(s.data) for s in batch.addressable_shards}
  for position, device in enumerate(mesh.devices.flat):  # row-major: data, then fsdp
    np.testing.assert_array_equal(shards[device],
                                  np.arange(16 * 3).reshape(16, 3)[2 * position:2 * position + 2])
  replicated = jax.device_put(np.ones(3), sharding.replicated(mesh))
  assert all(s.data.shape == (3,) for s in replicated.addressable_shards)


def test_auto_axes_allow_global_view_matmul_on_sharded_batch():
  """The reason for Auto axes: `q @ p.T` on a batch-sharded pair compiles and is right."""
  mesh = sharding.make_mesh(8)
  rng = np.random.default_rng(0)
  q, p = rng.normal(size=(2, 16, 4)).astype(np.float32)
  put = lambda x: jax.device_put(x, sharding.batch_sharding(mesh))
  scores = jax.jit(lambda q, p: q @ p.T)(put(q), put(p))
  np.testing.assert_allclose(scores, q @ p.T, rtol=1e-5, atol=1e-6)


def test_host_local_to_global_single_process():
  mesh = sharding.make_mesh(8)
  assert sharding.process_batch_slice(16, mesh) == slice(0, 16)
  tree = {"ids": np.arange(16 * 5).reshape(16, 5), "keys": np.arange(16)}
  out = sharding.host_local_to_global(mesh, tree)
  for name in tree:
    np.testing.assert_array_equal(out[name], tree[name])
    assert out[name].sharding == sharding.batch_sharding(mesh)
  with pytest.raises(ValueError, match="one local_batch"):
    sharding.host_local_to_global(mesh, {"ids": np.zeros((16, 5)), "keys": np.zeros(8)})
  with pytest.raises(ValueError, match="multiple of the number of devices"):
    sharding.host_local_to_global(mesh, {"keys": np.zeros(12)})


_WORKER = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                               process_id=int(sys.argv[2]))
    import numpy as np
    from jax.experimental import multihost_utils
    from hybrid_jax import losses, sharding

    mesh = sharding.make_mesh()
    global_batch = np.load(sys.argv[3])
    rows = sharding.process_batch_slice(len(global_batch["keys"]), mesh)
    batch = sharding.host_local_to_global(mesh, {k: global_batch[k][rows] for k in global_batch})

    def loss_fn(q, p, keys):
      return losses.sharded_contrastive_loss(mesh, q, p, keys, temperature=0.1,
                                             symmetric=True)[0]

    loss, grads = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))(
        batch["q"], batch["p"], batch["keys"])
    grads = [multihost_utils.process_allgather(g, tiled=True).tolist() for g in grads]
    print(json.dumps(dict(rows=[rows.start, rows.stop], loss=float(loss), grads=grads)))
""")


def test_two_processes_assemble_the_global_batch_and_gather_negatives(tmp_path):
  """2 processes x 4 devices: each feeds its half; loss and grads equal one 8-device process."""
  rng = np.random.default_rng(0)
  data = dict(
      q=rng.normal(size=(16, 4)).astype(np.float32), p=rng.normal(size=(16, 4)).astype(np.float32),
      keys=np.array([0, 1, 2, 3, 4, 5, 6, 7, 1, 9, 10, 11, 12, 13, 14, 6]))
  np.savez(tmp_path / "batch.npz", **data)
  (tmp_path / "worker.py").write_text(_WORKER)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(4), PYTHONPATH=os.pathsep.join(
      filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
  address = f"127.0.0.1:{free_port()}"
  workers = [
      subprocess.Popen([
          sys.executable,
          str(tmp_path / "worker.py"), address,
          str(i),
          str(tmp_path / "batch.npz")
      ], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)
  ]
  outputs = []
  for worker in workers:
    stdout, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 0, stderr[-3000:]
    outputs.append(json.loads(stdout.strip().splitlines()[-1]))
  assert [o["rows"] for o in outputs] == [[0, 8], [8, 16]]

  def loss_fn(q, p):
    return losses.contrastive_loss(q, p, jnp.asarray(data["keys"]), temperature=0.1,
                                   symmetric=True)[0]

  loss, grads = jax.value_and_grad(loss_fn, argnums=(0, 1))(data["q"], data["p"])
  for out in outputs:
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-5)
    for grad, expected in zip(out["grads"], grads):
      np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "shape,fsdp,expected",
    [
        ((250000, 1024), 8, P("fsdp", None)),  # largest divisible dimension: the vocabulary
        ((250002, 1024), 8, P(None, "fsdp")),  # XLM-R's vocabulary is not: the next largest
        ((1024, 4096), 32, P(None, "fsdp")),
        ((4096, 4096), 8, P("fsdp", None)),  # ties: the first dimension
        ((1023, 1025), 8, P()),  # nothing divisible: replicated
        ((64, 128), 8, P()),  # 8192 < FSDP_MIN_PARAM_SIZE elements
        ((1 << 16,), 8, P()),  # 1-D (biases, LayerNorm)
        ((), 8, P()),  # scalars
        ((1024, 4096), 1, P()),  # fsdp=1: everything replicated
    ])
def test_param_spec(shape, fsdp, expected):
  assert sharding.param_spec(shape, fsdp) == expected


def test_a_lora_factor_without_its_sibling_is_refused():
  """A LoRA factor is placed by its kernel's shape [in, out], read from A [sets, in, rank] and
  B [sets, rank, out] together (test_fsdp checks the placement)."""
  mesh = sharding.make_mesh(8, fsdp=2)
  with pytest.raises(ValueError, match=r"\['layer'\]\['lora_a'\] is a LoRA factor"):
    sharding.param_shardings(
        mesh, {"layer": {"kernel": jnp.zeros((64, 32)), "lora_a": jnp.zeros((1, 64, 4))}})


def test_state_shardings_split_adam_moments_like_their_params():
  mesh = sharding.make_mesh(8, fsdp=4)
  params = {
      "kernel": jnp.zeros((256, 128)), "bias": jnp.zeros((128,)), "table": jnp.zeros((97, 256))
  }
  state = {"params": params, "opt": optax.adamw(1e-3).init(params), "step": jnp.int32(0)}
  shardings = sharding.state_shardings(mesh, state)
  assert shardings["params"] == sharding.param_shardings(mesh, params)
  for moments in (shardings["opt"][0].mu, shardings["opt"][0].nu):
    assert moments == shardings["params"]
  assert shardings["params"]["kernel"].spec == P("fsdp", None)
  assert shardings["params"]["table"].spec == P(None, "fsdp")
  assert shardings["params"]["bias"].spec == P()
  assert shardings["opt"][0].count.spec == shardings["step"].spec == P()
  placed = jax.device_put(state, shardings)
  assert placed["params"]["kernel"].addressable_shards[0].data.shape == (64, 128)
  # An AbstractMesh of any size gives shard shapes without devices (benchmarks/fsdp_param_bytes).
  big = jax.sharding.AbstractMesh((2, 256), sharding.BATCH_AXES,
                                  axis_types=(AxisType.Auto, AxisType.Auto))
  assert sharding.param_shardings(big, params)["table"].shard_shape((97, 256)) == (97, 1)
