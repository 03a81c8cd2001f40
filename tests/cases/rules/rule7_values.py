"""Rule 7, values: every text survives byte for byte (long CLOB/TEXT bodies, non-ASCII,
quotes, backslashes); rows that break the model's constraints are INVALID_VALUE errors
found by validate (refused, nothing written), never a crash half-way."""

R = "ops@conference-1-c1.example.com"
R2 = "dev@conference-2-c1.example.com"
# quotes, backslashes, a tab, newlines, a CR, non-ASCII (Latin, CJK, an emoji), % and _
ODD = "it's \"quoted\" \\ back\\\\slash\ttab\nline\r\nGrüße 日本語 🎉 100% a_b $$ E'\\x00'"
LONG = (ODD + " ") * 120  # about 9,000 characters: a TEXT body, not the 4000 string
ROOM_ODD = "o'brien\\room 日本@conference-1-c1.example.com"

CASES = {
    "odd_and_long_text_through_a_room_one_input_holds": {
        "inputs": [
            {},
            {"tc_rooms": [{"room_jid": ROOM_ODD, "subject": ODD[:200], "config": LONG,
                           "spacket": ODD, "next_msg_id": 3}],
             "tc_msgarchive": [
                 {"to_jid": ROOM_ODD, "msg_id": 1, "body_string": ODD,
                  "message_string": f"<m>{ODD}</m>", "subject": ODD[:100]},
                 {"to_jid": ROOM_ODD, "msg_id": 2, "body_text": LONG,
                  "message_text": f"<m>{LONG}</m>"}],
             "tc_messages": [{"room_jid": ROOM_ODD, "msg_id": 2, "msg": f"<m>{LONG}</m>"}],
             "tc_users": [{"room_jid": ROOM_ODD, "real_jid": "zoë@example.com",
                           "reason": ODD[:200]}],
             "tc_timelog": [{"real_jid": "zoë@example.com", "room_jid": ROOM_ODD,
                             "start": 0}]},
        ],
        "expect": {
            "rows": {
                "tc_rooms": [{"room_jid": ROOM_ODD, "subject": ODD[:200], "config": LONG,
                              "spacket": ODD, "next_msg_id": 3}],
                "tc_msgarchive": [
                    {"to_jid": ROOM_ODD, "msg_id": 1, "body_string": ODD,
                     "message_string": f"<m>{ODD}</m>", "subject": ODD[:100]},
                    {"to_jid": ROOM_ODD, "msg_id": 2, "body_text": LONG,
                     "message_text": f"<m>{LONG}</m>"}],
                "tc_messages": [{"room_jid": ROOM_ODD, "msg_id": 2,
                                 "msg": f"<m>{LONG}</m>"}],
                "tc_users": [{"room_jid": ROOM_ODD, "real_jid": "zoë@example.com",
                              "reason": ODD[:200]}],
                "tc_timelog": [{"real_jid": "zoë@example.com", "room_jid": ROOM_ODD,
                                "start": 0}]},
            "findings": set(),
        },
    },
    "odd_and_long_text_through_staging_and_renumbering": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t"}],
             "tc_messages": [{"room_jid": R, "msg_id": 1}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 1, "body_text": LONG,
                                "message_string": ODD}],
             "tc_messages": [{"room_jid": R, "msg_id": 1, "stamp": 1, "msg": LONG}]},
        ],
        "expect": {
            "rows": {
                "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t"},
                                  {"to_jid": R, "msg_id": 2, "sent_date": 1,
                                   "body_text": LONG, "message_string": ODD}],
                "tc_messages": [{"room_jid": R, "msg_id": 1},
                                {"room_jid": R, "msg_id": 2, "stamp": 1, "msg": LONG}]},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
    "long_text_differing_in_its_last_character_is_not_a_duplicate": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_text": LONG + "a"}],
             "jm": [{"to_jid": R2, "body_text": LONG + "a"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_text": LONG + "b"},
                               {"to_jid": R, "msg_id": 2, "body_text": LONG + "a"}],
             "jm": [{"to_jid": R2, "body_text": LONG + "b"},
                    {"to_jid": R2, "body_text": LONG + "a"}]},
        ],
        "options": {"tables": "tc,ma"},
        "expect": {
            "rows": {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_text": LONG + "a"},
                                       {"to_jid": R, "msg_id": 2, "body_text": LONG + "b"}],
                     "jm": [{"to_jid": R2, "body_text": LONG + "a"},
                            {"to_jid": R2, "body_text": LONG + "b"}]},
            "counts": {"tc_msgarchive": {"inserted": 1, "duplicates": 1, "renumbered": 1},
                       "jm": {"inserted": 1, "duplicates": 1}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "a_role_outside_the_allowed_set_is_invalid_value_and_refused": {
        "inputs": [
            {"tc_users": [{"room_jid": R, "real_jid": "bob@example.com"}]},
            {"sql": ["ALTER TABLE tc_users DROP CONSTRAINT check_role"],
             "tc_users": [{"room_jid": R2, "real_jid": "eve@example.com", "role": "king"}],
             "tc_msgarchive": [{"to_jid": R2, "msg_id": 1, "body_string": "x"}]},
        ],
        "expect": {
            "exit": 1,
            "rows": {"tc_users": [{"room_jid": R, "real_jid": "bob@example.com"}],
                     "tc_msgarchive": []},
            "findings": {"error INVALID_VALUE"},
        },
    },
    "null_in_a_not_null_column_is_invalid_value_and_refused": {
        "inputs": [
            {},
            {"sql": ["ALTER TABLE tc_msgarchive ALTER COLUMN from_jid DROP NOT NULL"],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "x",
                                "from_jid": None}]},
        ],
        "expect": {
            "exit": 1,
            "rows": {"tc_msgarchive": []},
            "findings": {"error INVALID_VALUE"},
        },
    },
}
