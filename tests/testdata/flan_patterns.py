"""A tiny stand-in for FLAN's flan/data/templates.py, in its format, with made-up wording.

Used by tests/test_replication.py to check scripts/import_flan_templates.py. The importer
must read this with `ast`: running it would raise.
"""

raise RuntimeError("this file must be parsed, not executed")

PATTERNS = {
    "rte": [
        ("Text: {premise}\nClaim: {hypothesis}n\nDoes the text back the claim?\n{options_}",
         "{answer}"),
        ("{premise}\n\nSo, is \"{hypothesis}\" right?\n\n{options_}", "{answer}"),
        ("Make up a claim that the text \"{premise}\" supports.", "{hypothesis}"),
    ],
    "glue_mrpc": [
        ("One: {sentence1}\nTwo: {sentence2}\nSame meaning?\n{options_}", "{answer}"),
    ],
    "wmt16_translate": [
        ("Put this into {lang2}: {sent1}", "{sent2}"),
    ],
    "true_case": [
        ("fix the case: {lowercased}", "{answer}"),
    ],
    "mystery_key": [
        ("{x}", "{y}"),
    ],
}
