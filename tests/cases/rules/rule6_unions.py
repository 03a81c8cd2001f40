"""Rule 6, time log (tc_timelog) and jm: union without duplicates; aft_log (with
``mft``): aft_index renumbered where it collides. Duplicates are judged across inputs,
never within one: identical rows inside one input are all kept."""

R = "ops@conference-1-c1.example.com"
R2 = "dev@conference-2-c1.example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
ALL = {"tables": "tc,ma,mft"}

CASES = {
    "timelog_union_without_duplicates": {
        "inputs": [
            {"tc_timelog": [{"real_jid": BOB, "room_jid": R, "start": 0, "end": 5},
                            {"real_jid": CAROL, "room_jid": R, "start": 3, "end": None}]},
            {"tc_timelog": [{"real_jid": BOB, "room_jid": R, "start": 0, "end": 5},
                            {"real_jid": CAROL, "room_jid": R, "start": 3, "end": None},
                            {"real_jid": CAROL, "room_jid": R, "start": 3, "end": 4}]},
        ],
        "expect": {
            "rows": {"tc_timelog": [
                {"real_jid": BOB, "room_jid": R, "start": 0, "end": 5},
                {"real_jid": CAROL, "room_jid": R, "start": 3, "end": None},
                {"real_jid": CAROL, "room_jid": R, "start": 3, "end": 4}]},
            "counts": {"tc_timelog": {"read": [2, 3], "inserted": 1, "duplicates": 2}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
    "timelog_rows_identical_inside_one_input_are_all_kept": {
        "inputs": [
            {"tc_timelog": [{"real_jid": BOB, "room_jid": R, "start": 10, "end": 11}]},
            {"tc_timelog": [{"real_jid": BOB, "room_jid": R, "start": 0, "end": 5},
                            {"real_jid": BOB, "room_jid": R, "start": 0, "end": 5},
                            {"real_jid": BOB, "room_jid": R2, "start": 0, "end": 5},
                            {"real_jid": BOB, "room_jid": R2, "start": 0, "end": 5}]},
            {"tc_timelog": [{"real_jid": BOB, "room_jid": R, "start": 0, "end": 5}]},
        ],
        "expect": {
            "rows": {"tc_timelog": [
                {"real_jid": BOB, "room_jid": R, "start": 10, "end": 11},
                {"real_jid": BOB, "room_jid": R, "start": 0, "end": 5},
                {"real_jid": BOB, "room_jid": R, "start": 0, "end": 5},
                {"real_jid": BOB, "room_jid": R2, "start": 0, "end": 5},
                {"real_jid": BOB, "room_jid": R2, "start": 0, "end": 5}]},
            "counts": {"tc_timelog": {"inserted": 4, "duplicates": 1}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
    "jm_union_without_duplicates": {
        "inputs": [
            {"jm": [{"to_jid": BOB, "sent_date": 0, "body_string": "hi"}]},
            {"jm": [{"to_jid": BOB, "sent_date": 0, "body_string": "hi"},
                    {"to_jid": BOB, "sent_date": 0, "body_string": "hi", "thread_id": "t1"},
                    {"to_jid": CAROL, "sent_date": 1, "body_string": "yo"}]},
        ],
        "options": ALL,
        "expect": {
            "rows": {"jm": [
                {"to_jid": BOB, "sent_date": 0, "body_string": "hi"},
                {"to_jid": BOB, "sent_date": 0, "body_string": "hi", "thread_id": "t1"},
                {"to_jid": CAROL, "sent_date": 1, "body_string": "yo"}]},
            "counts": {"jm": {"read": [1, 3], "inserted": 2, "duplicates": 1}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
    "jm_rows_identical_inside_one_input_are_all_kept": {
        "inputs": [
            {},
            {"jm": [{"to_jid": BOB, "body_string": "ok"}, {"to_jid": BOB, "body_string": "ok"}]},
            {"jm": [{"to_jid": BOB, "body_string": "ok"}]},
        ],
        "options": ALL,
        "expect": {
            "rows": {"jm": [{"to_jid": BOB, "body_string": "ok"},
                            {"to_jid": BOB, "body_string": "ok"}]},
            "counts": {"jm": {"inserted": 2, "duplicates": 1}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
    "aft_index_renumbered_where_it_collides": {
        "inputs": [
            {"aft_log": [{"aft_index": 1, "filename": "a"}, {"aft_index": 2, "filename": "b"}]},
            {"aft_log": [{"aft_index": 2, "filename": "c"},     # collides: new index
                         {"aft_index": 3, "filename": "d"},     # free: kept
                         {"aft_index": 1, "filename": "a"}]},   # equal to the target's
        ],
        "options": ALL,
        "expect": {
            "rows": {"aft_log": [{"aft_index": 1, "filename": "a"},
                                 {"aft_index": 2, "filename": "b"},
                                 {"aft_index": 3, "filename": "d"},
                                 {"aft_index": 4, "filename": "c"}]},
            "counts": {"aft_log": {"read": [2, 3], "inserted": 2, "duplicates": 1,
                                   "renumbered": 1}},
            "findings": {"info AFT_INDEX_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "aft_collisions_numbered_by_time_then_input_then_index": {
        "inputs": [
            {"aft_log": [{"aft_index": 1, "timestampvalue": 0, "filename": "t"}]},
            {"aft_log": [{"aft_index": 1, "timestampvalue": 5, "filename": "one"}]},
            {"aft_log": [{"aft_index": 1, "timestampvalue": 2, "filename": "two"},
                         {"aft_index": 2, "timestampvalue": 9, "filename": "two-b"}]},
        ],
        "options": ALL,
        "expect": {
            "rows": {"aft_log": [
                {"aft_index": 1, "timestampvalue": 0, "filename": "t"},
                {"aft_index": 2, "timestampvalue": 9, "filename": "two-b"},
                {"aft_index": 3, "timestampvalue": 2, "filename": "two"},
                {"aft_index": 4, "timestampvalue": 5, "filename": "one"}]},
            "counts": {"aft_log": {"inserted": 3, "renumbered": 2}},
            "findings": {"info AFT_INDEX_COLLISION"},
        },
    },
    "aft_row_equal_but_for_its_index_is_a_duplicate": {
        "inputs": [
            {"aft_log": [{"aft_index": 1, "filename": "x", "file_size": 77}]},
            {"aft_log": [{"aft_index": 7, "filename": "x", "file_size": 77},
                         {"aft_index": 8, "filename": "x", "file_size": 78}]},
        ],
        "options": ALL,
        "expect": {
            "rows": {"aft_log": [{"aft_index": 1, "filename": "x", "file_size": 77},
                                 {"aft_index": 8, "filename": "x", "file_size": 78}]},
            "counts": {"aft_log": {"inserted": 1, "duplicates": 1, "renumbered": 0}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
}
