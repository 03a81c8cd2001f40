"""Rule 2, archive (tc_msgarchive, key to_jid + msg_id): a room held by one input keeps
its rows and ids; in a shared room the owner's rows keep their ids, a later input's row
equal to a present row in every column but msg_id is a duplicate and is dropped, the
others get new ids above the room's highest id in (sent_date, input order, old msg_id)
order (MSG_ID_COLLISION, info). Duplicates are judged across inputs, never within one."""

R = "ops@conference-1-c1.example.com"
R2 = "dev@conference-2-c1.example.com"

CASES = {
    "room_held_by_one_input_keeps_its_ids": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 2}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t1"}]},
            {"tc_rooms": [{"room_jid": R2, "next_msg_id": 8}],
             "tc_msgarchive": [{"to_jid": R2, "msg_id": 5, "body_string": "five"},
                               {"to_jid": R2, "msg_id": 7, "sent_date": 1,
                                "body_string": "seven"}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "body_string": "t1"},
                {"to_jid": R2, "msg_id": 5, "body_string": "five"},
                {"to_jid": R2, "msg_id": 7, "sent_date": 1, "body_string": "seven"}]},
            "counts": {"tc_msgarchive": {"read": [1, 2], "inserted": 2, "duplicates": 0,
                                         "renumbered": 0}},
            "findings": set(),
        },
    },
    "owner_keeps_ids_later_rows_renumbered_above_the_highest": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t1"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 5,
                                "body_string": "t2"}]},
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 1, "body_string": "s1"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 2,
                                "body_string": "s2"}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t1"},
                {"to_jid": R, "msg_id": 2, "sent_date": 5, "body_string": "t2"},
                {"to_jid": R, "msg_id": 3, "sent_date": 1, "body_string": "s1"},
                {"to_jid": R, "msg_id": 4, "sent_date": 2, "body_string": "s2"}]},
            "counts": {"tc_msgarchive": {"inserted": 2, "duplicates": 0, "renumbered": 2},
                       "tc_rooms": {"inserted": 0, "duplicates": 1}},
            # the equal tc_rooms rows are the DUPLICATE_ROWS
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "renumbering_order_is_sent_date_then_input_then_old_id": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 10, "sent_date": 5, "body_string": "a"},
                               {"to_jid": R, "msg_id": 11, "sent_date": 3,
                                "body_string": "b"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 2, "sent_date": 3, "body_string": "c"},
                               {"to_jid": R, "msg_id": 1, "sent_date": 3,
                                "body_string": "d"}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t"},
                {"to_jid": R, "msg_id": 2, "sent_date": 3, "body_string": "b"},  # input 1
                {"to_jid": R, "msg_id": 3, "sent_date": 3, "body_string": "d"},  # 2, id 1
                {"to_jid": R, "msg_id": 4, "sent_date": 3, "body_string": "c"},  # 2, id 2
                {"to_jid": R, "msg_id": 5, "sent_date": 5, "body_string": "a"}]},
            "counts": {"tc_msgarchive": {"read": [1, 2, 2], "inserted": 4, "renumbered": 4}},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
    "equal_in_every_column_but_msg_id_is_dropped": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 4, "body_string": "hi",
                                "message_string": "<m>hi</m>", "subject": "s"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 7, "sent_date": 4, "body_string": "hi",
                                "message_string": "<m>hi</m>", "subject": "s"}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 4,
                                        "body_string": "hi", "message_string": "<m>hi</m>",
                                        "subject": "s"}]},
            "counts": {"tc_msgarchive": {"inserted": 0, "duplicates": 1, "renumbered": 0}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
    "one_other_column_makes_it_a_new_row": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "hi"}]},
            {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "body_string": "hi", "from_jid": "bob@example.com"},
                {"to_jid": R, "msg_id": 2, "body_string": "hi", "msg_type": "c"},
                {"to_jid": R, "msg_id": 3, "body_string": "hi", "sent_date": 1}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "body_string": "hi"},
                {"to_jid": R, "msg_id": 2, "body_string": "hi", "from_jid": "bob@example.com"},
                {"to_jid": R, "msg_id": 3, "body_string": "hi", "msg_type": "c"},
                {"to_jid": R, "msg_id": 4, "body_string": "hi", "sent_date": 1}]},
            "counts": {"tc_msgarchive": {"inserted": 3, "duplicates": 0, "renumbered": 3}},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
    "identical_rows_inside_one_input_are_all_kept": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 4, "body_string": "x"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 4, "body_string": "x"},
                               # a room only this input holds: straight in, both kept
                               {"to_jid": R2, "msg_id": 1, "body_string": "y"},
                               {"to_jid": R2, "msg_id": 2, "body_string": "y"}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "body_string": "t"},
                {"to_jid": R, "msg_id": 2, "sent_date": 4, "body_string": "x"},
                {"to_jid": R, "msg_id": 3, "sent_date": 4, "body_string": "x"},
                {"to_jid": R2, "msg_id": 1, "body_string": "y"},
                {"to_jid": R2, "msg_id": 2, "body_string": "y"}]},
            "counts": {"tc_msgarchive": {"inserted": 4, "duplicates": 0, "renumbered": 2}},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
    "identical_rows_inside_the_owner_are_kept_and_a_later_copy_dropped": {
        "inputs": [
            {},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 2, "body_string": "x"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 2,
                                "body_string": "x"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 9, "sent_date": 2, "body_string": "x"},
                               {"to_jid": R, "msg_id": 1, "sent_date": 3,
                                "body_string": "z"}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "sent_date": 2, "body_string": "x"},
                {"to_jid": R, "msg_id": 2, "sent_date": 2, "body_string": "x"},
                {"to_jid": R, "msg_id": 3, "sent_date": 3, "body_string": "z"}]},
            "counts": {"tc_msgarchive": {"read": [0, 2, 2], "inserted": 3, "duplicates": 1,
                                         "renumbered": 1}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "a_later_sources_copy_of_an_earlier_sources_row_is_dropped": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R2}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "a"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 1,
                                "body_string": "b"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 9, "sent_date": 1, "body_string": "b"},
                               {"to_jid": R, "msg_id": 1, "sent_date": 2,
                                "body_string": "c"}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "a"},
                {"to_jid": R, "msg_id": 2, "sent_date": 1, "body_string": "b"},
                {"to_jid": R, "msg_id": 3, "sent_date": 2, "body_string": "c"}]},
            "counts": {"tc_msgarchive": {"inserted": 3, "duplicates": 1, "renumbered": 1}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "null_and_empty_text_are_different_values": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "x", "subject": None}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "x", "subject": ""}]},
        ],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "body_string": "x", "subject": None},
                {"to_jid": R, "msg_id": 2, "body_string": "x", "subject": ""}]},
            "counts": {"tc_msgarchive": {"inserted": 1, "duplicates": 0, "renumbered": 1}},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
}
