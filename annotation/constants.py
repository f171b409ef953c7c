"""Defaults and limits of the annotation app."""

DEFAULT_DIMENSIONS: list[dict] = [
    {
        "key": "prompt_following",
        "label": "Prompt following",
        "rubric": "Did the edit do what the instruction asked, completely and precisely? "
        "Rank edits that carry out every part of the instruction above partial edits; "
        "an edit that ignores the instruction (or returns the source unchanged) belongs at the bottom.",
    },
    {
        "key": "consistency",
        "label": "Consistency",
        "rubric": "Is everything the instruction did not ask to change preserved: identity, "
        "layout, background, colours, details? Penalise over-editing and unrelated changes. "
        "Judge preservation only, not whether the requested edit happened.",
    },
    {
        "key": "overall",
        "label": "Overall",
        "rubric": "Taking everything into account (instruction followed, the rest preserved, "
        "a natural image free of artefacts, blur or distortions), which edit would you rather ship?",
    },
]

MIN_CANDIDATES, MAX_CANDIDATES = 2, 8
