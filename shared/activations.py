# SPEC.md "Named activations": the intermediate tensors every tier can return, in forward order,
# so two tiers can be compared layer by layer.
from shared.config import GPTConfig

LAYER_ACTIVATIONS = {
    # name within block i -> shape, in the order the forward computes them
    "ln_1": "(B, T, C)",
    "attn.qkv": "(B, T, 3C)",  # c_attn output, before the split into heads
    "attn.att": "(B, NH, T, T)",  # attention weights after softmax; masked entries are 0
    "attn.y": "(B, T, C)",  # heads merged, before c_proj
    "attn.out": "(B, T, C)",  # after c_proj
    "res_1": "(B, T, C)",  # x + attn(ln_1(x))
    "ln_2": "(B, T, C)",
    "mlp.fc": "(B, T, 4C)",  # c_fc output, before gelu
    "mlp.gelu": "(B, T, 4C)",
    "mlp.out": "(B, T, C)",  # after mlp.c_proj
    "res_2": "(B, T, C)",  # res_1 + mlp(ln_2(res_1)): the block's output
}


def activation_names(config: GPTConfig) -> list[str]:
    names = ["emb"]  # wte[idx] + wpe[pos], (B, T, C)
    for i in range(config.n_layer):
        names += [f"h.{i}.{n}" for n in LAYER_ACTIVATIONS]
    names += ["ln_f", "logits"]
    return names
