"""Lyric constraints: the spec a user gives (``spec``), the state and logits processor the
decoding loop consults (``state``, ``processor``, from the per-token ``vocab_profile``), the
whole-word rule (``word_ends``, ``lookahead``) and what a candidate reports (``report``).

Only ``spec`` and ``report`` are imported before a model loads; they import no torch.
"""
