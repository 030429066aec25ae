"""Unit tests of the Scala kernel's reading of what the REPL printed (no JVM)."""

from kiln_kernel import scala_kernel as sk

ECHOED = (
    "\x1b[32m\nscala> \x1b[0mval x = 21 \n\rx: Int = 21\n"
    "\nscala> def f(a: Int) = {\n         a * 2\n       } \n\rdefined function f\n"
    "\nscala> println(\"hi\") \n\rhi\n"
    "\nscala> semaphore.release() \n\r"
)


def test_outputs_drop_the_echo_and_the_semaphore():
    assert sk.outputs(ECHOED) == ["x: Int = 21", "defined function f", "hi"]


def test_a_display_is_a_table_and_text_stays_text():
    printed = (
        "\nscala> display(df) \n\r"
        + sk.TABLE + '{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}},'
        '{"name":"s","type":"string","nullable":true,"metadata":{}}]} false\n'
        + sk.ROW + '[0,"a\\"b"]\n' + sk.ROW + "[1,null]\n"
        "\nscala> semaphore.release() \n\r"
    )
    status, result = sk.result_of(printed, 10)
    assert status == "Finished" and result["resultType"] == "table"
    assert result["data"] == [[0, 'a"b'], [1, None]]
    assert [c["name"] for c in result["schema"]] == ["id", "s"] and result["schema"][1]["type"] == '"string"'
    status, result = sk.result_of("\nscala> 1 + 1 \n\rres0: Int = 2\n", 10)
    assert (status, result) == ("Finished", {"resultType": "text", "data": "res0: Int = 2"})


def test_errors_say_what_cannot_run_here():
    status, result = sk.result_of(
        "\nscala> sc.parallelize(1 to 3) \n\rcmd1.sc:1: not found: value sc\nval res1 = sc.parallelize(1 to 3)\n"
        "           ^\nCompilation Failed\n", 10)
    assert status == "Error" and "no SparkContext" in result["summary"]
    status, result = sk.result_of(
        "\nscala> spark.udf.register(\"f\", g) \n\rorg.apache.spark.SparkUnsupportedOperationException: "
        "Scala UDF is not supported yet\n  org.apache.spark.sql.connect.X(X.scala:1)\n", 10)
    assert status == "Error" and "Scala UDFs" in result["summary"] and "  org.apache" in result["cause"]
    status, result = sk.result_of('\nscala> f(1 \n\r(console):1:4 expected ")"\nf(1\n   ^\n', 10)
    assert status == "Error" and result["summary"] == '(console):1:4 expected ")"'
    status, result = sk.result_of("\nscala> throw new RuntimeException(\"boom\") \n\rjava.lang.RuntimeException: boom\n", 10)
    assert status == "Error" and result["summary"].startswith("java.lang.RuntimeException: boom")
    assert "Scala UDFs" not in result["summary"]


def test_sql_becomes_scala_strings():
    assert sk.scala_string("SELECT '$x'") == "\"\"\"SELECT '$x'\"\"\""
    assert sk.scala_string('a """ b') == '"a \\"\\"\\" b"'


def test_incomplete_commands_are_never_sent():
    assert sk.unbalanced("val a = {") and "'}'" in sk.unbalanced("val a = {")
    assert sk.unbalanced('println("abc') == "an unclosed string"
    assert sk.unbalanced('val s = """abc') == 'an unclosed """ string'
    assert sk.unbalanced("/* note") == "an unclosed /* comment"
    for complete in ('val a = { 1 }', 'println("{")', "// {\nval b = 2", 'val s = """ ( """', "def f(x: Int) = {\n  x * 2\n}",
                     "'{' + 1", "'\\'' + 1", "f(1))"):
        assert sk.unbalanced(complete) is None, complete
