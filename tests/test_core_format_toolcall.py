import json

import re

import pytest
from hypothesis import given, settings, strategies as st

from swe_srl.core import ToolCall, canonicalize_action, from_openai, from_shell, parse_completion, parse_single_tool_call
from swe_srl.core.toolcall import ToolCallError, parse_tool_calls


def test_canonical_text_shape_and_param_order():
    call = ToolCall.make("str_replace_editor", {"new_str": "b\n", "path": "/testbed/a.py", "old_str": "a",
                                                "command": "str_replace"})
    assert call.to_text() == ("<function=str_replace_editor>\n<parameter=command>str_replace</parameter>\n"
                              "<parameter=path>/testbed/a.py</parameter>\n<parameter=old_str>a</parameter>\n"
                              "<parameter=new_str>b</parameter>\n</function>")


def test_from_openai_json_string_and_dict_agree():
    tc = {"id": "x", "type": "function", "function": {"name": "str_replace_editor", "arguments": json.dumps(
        {"command": "view", "path": "/testbed/x.py", "view_range": [1, 20]})}}
    a = from_openai(tc)
    b = from_openai({"name": "str_replace_editor", "arguments": {"path": "/testbed/x.py", "command": "view",
                                                                  "view_range": [1, 20]}})
    assert a == b
    assert "<parameter=view_range>[1, 20]</parameter>" in a.to_text()


def test_from_openai_bad_json_is_clear():
    with pytest.raises(ToolCallError, match="arguments"):
        from_openai({"function": {"name": "bash", "arguments": "{not json"}})


def test_execute_bash_alias_and_shell():
    assert from_openai({"function": {"name": "execute_bash", "arguments": '{"command": "ls"}'}}) == from_shell("ls")


def test_whitespace_tolerant_xml():
    text = "<function= bash >\n  <parameter =command>\n git status \n</parameter >\n</function >"
    assert parse_single_tool_call(text) == from_shell("git status")


def test_text_block_params_keep_inner_whitespace():
    text = ("<function=str_replace_editor>\n<parameter=command>str_replace</parameter>\n<parameter=path>/t/a.py"
            "</parameter>\n<parameter=old_str>\n    x = 1\n\n</parameter>\n</function>")
    call = parse_single_tool_call(text)
    assert call.arguments["old_str"] == "    x = 1\n"


params = st.dictionaries(st.sampled_from(["command", "path", "old_str", "new_str", "file_text", "insert_line"]),
                         st.text(alphabet=st.characters(blacklist_characters="<>\r", blacklist_categories=("Cs",)),
                                 max_size=40), max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["bash", "str_replace_editor", "submit", "custom_tool"]), params)
def test_canonicalization_round_trips(name, args):
    call = ToolCall.make(name, args)
    text = call.to_text()
    assert parse_single_tool_call(text) == call
    assert canonicalize_action(text) == text
    assert canonicalize_action(canonicalize_action("  " + text + "\n")) == text
    assert from_openai(call.to_openai()) == call


def test_parse_tool_calls_multiple():
    assert len(parse_tool_calls("<function=a></function> x <function=b></function>")) == 2


def test_parse_completion_parts():
    p = parse_completion("  <think> plan </think>\n<solution>ans</solution>")
    assert p.ok and p.action == "ans" and p.monologue == "plan"


TAG_STRINGS = ["</parameter>", "<parameter=command>", "</function>", "<function=bash>", "</parameter >",
               "<parameter=path>x</parameter>", "<function=str_replace_editor></function>"]


@pytest.mark.parametrize("tag", TAG_STRINGS)
@pytest.mark.parametrize("key", ["command", "file_text", "new_str"])
def test_values_containing_tag_strings_round_trip(tag, key):
    """Issue #11: a value holding `</parameter>` (or any other tag string) was cut at the first closing tag."""
    for value in (f"a {tag} b", f"{tag}tail", f"head{tag}", f"cat <<EOF\n{tag}\nEOF", tag * 2):
        if re.search(r"</parameter\s*>\s*(<parameter\s*=|</function)", value):
            continue      # the one layout a value cannot hold (module doc): tag*2 of "<parameter=path>x</parameter>"
        name = "bash" if key == "command" else "str_replace_editor"
        call = ToolCall.make(name, {key: value, **({"path": "/t/f.py"} if name != "bash" else {})})
        text = call.to_text()
        assert parse_single_tool_call(text) == call, (key, value)
        assert parse_tool_calls(text + "\n" + text) == [call, call]
        assert canonicalize_action("  " + text + "\n") == text


def test_tag_strings_do_not_hide_format_errors():
    v = "<function=bash><parameter=command>echo '</parameter>'</parameter></function>"
    assert parse_single_tool_call(v).arguments["command"] == "echo '</parameter>'"
    with pytest.raises(ToolCallError, match="malformed_tool_call"):
        parse_single_tool_call("<function=bash><parameter=command>echo </parameter> tail")
    with pytest.raises(ToolCallError, match="multiple_tool_calls"):
        parse_single_tool_call(v + v)
    with pytest.raises(ToolCallError, match="text_outside_tool_call"):
        parse_single_tool_call("run: " + v)
