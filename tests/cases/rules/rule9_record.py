"""Rule 9, record: every run leaves a job record in the target, with the per-table counts
(written in the merge transaction on success). The runner checks in every case: a
successful run has exactly one record, succeeded, with the run's counts and no password;
a refused run (exit 1, nothing written) has no succeeded record. ``job_tables`` names the
tables the record counts: the selection of ``--tables``."""

R = "ops@conference-1-c1.example.com"

CASES = {
    "a_successful_run_records_its_counts": {
        "inputs": [
            {},
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 2}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "x"}]},
        ],
        "expect": {
            "counts": {"tc_rooms": {"inserted": 1}, "tc_msgarchive": {"inserted": 1}},
            "findings": set(),
            "job_tables": ["tc_rooms", "tc_users", "tc_messages", "tc_msgarchive",
                           "tc_timelog"],
        },
    },
    "a_run_of_every_table_set_records_every_table": {
        "inputs": [
            {"jm": [{"to_jid": "bob@example.com", "body_string": "a"}]},
            {"jm": [{"to_jid": "bob@example.com", "body_string": "b"}],
             "aft_log": [{"aft_index": 5}]},
        ],
        "options": {"tables": "tc,ma,mft"},
        "expect": {
            "counts": {"jm": {"read": [1, 1], "inserted": 1}, "aft_log": {"inserted": 1}},
            "findings": set(),
            "job_tables": ["tc_rooms", "tc_users", "tc_messages", "tc_msgarchive",
                           "tc_timelog", "jm", "aft_log"],
        },
    },
    "an_empty_source_still_records_a_job": {
        "inputs": [{"tc_rooms": [{"room_jid": R}]}, {}],
        "expect": {
            "counts": {"tc_rooms": {"read": [1, 0], "inserted": 0}},
            "findings": set(),
            "job_tables": ["tc_rooms", "tc_users", "tc_messages", "tc_msgarchive",
                           "tc_timelog"],
        },
    },
    "a_refused_run_records_no_succeeded_job": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "creator_jid": "alice@example.com"}]},
            {"tc_rooms": [{"room_jid": R, "creator_jid": "bob@example.com"}]},
        ],
        "expect": {"exit": 1, "findings": {"error ROOM_CONFLICT"}},
    },
}
