"""Can the policy answer 'Is that about S?' after quoting the user's words (prefilled think)?
Compares the next-token logits of ' Yes' and ' No'."""
import sys, time
from agemem_lite.config import Settings
from agemem_lite.assistant import open_policy
from agemem_lite import decisions as D, protocol

variant = sys.argv[1]  # v6 | base | a GGUF LoRA adapter file (on the v6 policy's model)
s = Settings.load() if variant in ("v6", "base") else Settings.load(adapter=variant)
name = "qwen2.5-coder-0.5b" if variant == "base" else "agemem-0.5b"
pol = open_policy(s, name)
llm = pol.llm
yes_id = llm.tokenize(b" Yes", add_bos=False)[-1]
no_id = llm.tokenize(b" No", add_bos=False)[-1]
items = [i for i in D.generate(28, 0, "heldout") if i.label in ("filter", "summary")]
items += [i for i in D.natural_items() if i.label in ("filter", "summary")]
ok = 0
for it in items:
    prompt = pol.tokenize(pol.render(D.messages(it)))
    think = (protocol.THINK_OPEN + f"Kind: {it.kind}. The context is long and about {it.basis}. "
             f"The user writes: \"{it.user}\" Is that about {it.basis}?")
    toks = prompt + pol.tokenize(think, special=False)
    t0 = time.time()
    llm.reset()
    llm.eval(toks)
    import numpy as np
    sc = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
    margin = float(sc[yes_id] - sc[no_id])
    right = (margin > 0) == (it.label == "summary")
    ok += right
    print(f"{variant} {it.id:12s} {it.label:8s} right={right} yes-no={margin:+.2f} {time.time()-t0:.0f}s", flush=True)
print(variant, "right", ok, "/", len(items), flush=True)
