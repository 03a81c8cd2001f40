"""Rule 1, rooms (tc_rooms): one row per room_jid, taken from the owner (the first input
holding the room); a different creator_jid or type is ROOM_CONFLICT (error, refused); a
different subject/config/spacket is ROOM_DIVERGED (warning; the owner's row wins)."""

R = "ops@conference-1-c1.example.com"
R2 = "dev@conference-2-c1.example.com"

CASES = {
    "room_only_in_a_source_is_inserted_as_it_is": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R2, "subject": "mine"}]},
            {"tc_rooms": [{"room_jid": R, "subject": "new", "config": "<c a='1'/>",
                           "start_msg_id": 1, "next_msg_id": 1}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R2, "subject": "mine"},
                                  {"room_jid": R, "subject": "new", "config": "<c a='1'/>"}]},
            "counts": {"tc_rooms": {"read": [1, 1], "inserted": 1, "duplicates": 0,
                                    "conflicts": 0}},
            "findings": set(),
        },
    },
    "identical_room_is_a_duplicate_even_with_other_counters": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 9}]},
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 4}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "next_msg_id": 9}]},
            "counts": {"tc_rooms": {"inserted": 0, "duplicates": 1, "conflicts": 0}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
    "target_owns_the_room_its_row_wins_over_a_diverged_subject": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "subject": "target's", "config": "<a/>"}]},
            {"tc_rooms": [{"room_jid": R, "subject": "source's", "config": "<b/>",
                           "spacket": "<t/>"}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "subject": "target's", "config": "<a/>"}]},
            "counts": {"tc_rooms": {"inserted": 0, "duplicates": 0, "conflicts": 1}},
            "findings": {"warning ROOM_DIVERGED"},
        },
    },
    "first_source_owns_a_room_the_target_lacks": {
        "inputs": [
            {},
            {"tc_rooms": [{"room_jid": R, "subject": "one", "spacket": "<one/>"}]},
            {"tc_rooms": [{"room_jid": R, "subject": "two", "spacket": "<two/>"}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "subject": "one", "spacket": "<one/>"}]},
            "counts": {"tc_rooms": {"read": [0, 1, 1], "inserted": 1, "conflicts": 1}},
            "findings": {"warning ROOM_DIVERGED"},
        },
    },
    "config_only_divergence_is_a_warning": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "config": "<x a='1'/>"}]},
            {"tc_rooms": [{"room_jid": R, "config": "<x a='2'/>"}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "config": "<x a='1'/>"}]},
            "counts": {"tc_rooms": {"conflicts": 1}},
            "findings": {"warning ROOM_DIVERGED"},
        },
    },
    "diverged_room_with_strict_is_refused": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "subject": "a"}]},
            {"tc_rooms": [{"room_jid": R, "subject": "b"}, {"room_jid": R2}]},
        ],
        "options": {"strict": True},
        "expect": {
            "exit": 1,
            "rows": {"tc_rooms": [{"room_jid": R, "subject": "a"}]},
            "findings": {"warning ROOM_DIVERGED"},
        },
    },
    "other_creator_is_room_conflict_and_refused": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "creator_jid": "alice@example.com"}]},
            {"tc_rooms": [{"room_jid": R, "creator_jid": "mallory@example.com"},
                          {"room_jid": R2}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "x"}]},
        ],
        "expect": {
            "exit": 1,
            "rows": {"tc_rooms": [{"room_jid": R}], "tc_msgarchive": []},
            # the analysis is whole: the source's row of R would have been renumbered
            "findings": {"error ROOM_CONFLICT", "info MSG_ID_COLLISION"},
        },
    },
    "other_type_is_room_conflict_and_refused": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "type": "persistent"}]},
            {"tc_rooms": [{"room_jid": R, "type": "ad-hoc", "subject": "also other"}]},
        ],
        "expect": {
            "exit": 1,
            "rows": {"tc_rooms": [{"room_jid": R, "type": "persistent"}]},
            # a conflicting room is not also reported as diverged
            "findings": {"error ROOM_CONFLICT"},
        },
    },
    "conflict_between_two_sources_without_the_target": {
        "inputs": [
            {},
            {"tc_rooms": [{"room_jid": R, "creator_jid": "alice@example.com"}]},
            {"tc_rooms": [{"room_jid": R, "creator_jid": "bob@example.com"}]},
        ],
        "expect": {
            "exit": 1,
            "rows": {"tc_rooms": []},
            "findings": {"error ROOM_CONFLICT"},
        },
    },
}
