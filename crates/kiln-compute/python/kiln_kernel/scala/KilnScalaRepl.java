// Drives Spark Connect's Scala REPL (Ammonite, `ConnectRepl`) for one Kiln
// Scala context. Compiled by Kiln with the JDK's javac when it installs the
// REPL; run by kiln_kernel.scala_kernel.
//
// Protocol on this process's stdin/stdout (nothing else is written to stdout):
//   in:  "RUN <n>\n" followed by n bytes of UTF-8 Scala source
//        "INTERRUPT\n" interrupts the running command's Spark operations
//   out: "READY\n" once the REPL answered its first command
//        "DONE <ok> <base64 of what the REPL printed>\n" per RUN, where ok is
//        true when the REPL finished it (false: it did not answer in time)
// A command is known to be finished by a `semaphore.release()` sent after it,
// as Spark's own REPL tests do.
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

public class KilnScalaRepl {
  static final class Capture extends OutputStream {
    private final ByteArrayOutputStream buf = new ByteArrayOutputStream();
    public synchronized void write(int b) { buf.write(b); }
    public synchronized void write(byte[] b, int off, int len) { buf.write(b, off, len); }
    synchronized byte[] take() { byte[] out = buf.toByteArray(); buf.reset(); return out; }
  }

  public static void main(String[] args) throws Exception {
    PrintStream protocol = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
    Capture capture = new Capture();
    PrintStream captured = new PrintStream(capture, true, "UTF-8");
    // What user code prints goes to the command's output; the JVM's own
    // logging (System.err) stays in the kernel log.
    System.setOut(captured);
    PipedOutputStream feed = new PipedOutputStream();
    PipedInputStream replIn = new PipedInputStream(feed, 1 << 20);
    Semaphore done = new Semaphore(0);
    Thread repl = new Thread(() -> {
      try {
        org.apache.spark.sql.application.ConnectRepl$.MODULE$.doMain(
            args, scala.Option.apply(done), replIn, capture, capture);
      } catch (Throwable t) {
        t.printStackTrace(captured);
      }
      done.release(1000);
    }, "kiln-scala-repl");
    repl.setDaemon(true);
    repl.start();
    long timeout = Long.parseLong(System.getenv().getOrDefault("KILN_SCALA_TIMEOUT_SECONDS", "86400"));
    DataInputStream in = new DataInputStream(new BufferedInputStream(System.in));
    feed.write("semaphore.release()\n".getBytes(StandardCharsets.UTF_8));
    feed.flush();
    boolean started = done.tryAcquire(600, TimeUnit.SECONDS) && repl.isAlive();
    byte[] banner = capture.take();
    if (!started) {
      protocol.println("FAILED " + Base64.getEncoder().encodeToString(banner));
      return;
    }
    protocol.println("READY");
    // One reader: RUN payloads are queued, INTERRUPT acts at once.
    java.util.concurrent.BlockingQueue<byte[]> runs = new java.util.concurrent.LinkedBlockingQueue<>();
    Thread reader = new Thread(() -> {
      try {
        String line;
        while ((line = readLine(in)) != null) {
          if (line.equals("INTERRUPT")) {
            interrupt(captured);
          } else if (line.startsWith("RUN ")) {
            byte[] code = new byte[Integer.parseInt(line.substring(4).trim())];
            in.readFully(code);
            runs.put(code);
          }
        }
      } catch (Exception e) {
        e.printStackTrace(captured);
      }
      runs.add(new byte[0]);
    }, "kiln-scala-reader");
    reader.setDaemon(true);
    reader.start();
    while (true) {
      byte[] code = runs.take();
      if (code.length == 0) return; // stdin closed: Kiln ended the context
      feed.write(code);
      feed.write("\nsemaphore.release()\n".getBytes(StandardCharsets.UTF_8));
      feed.flush();
      boolean ok = done.tryAcquire(timeout, TimeUnit.SECONDS) && repl.isAlive();
      protocol.println("DONE " + ok + " " + Base64.getEncoder().encodeToString(capture.take()));
      if (!repl.isAlive()) return;
    }
  }

  private static String readLine(DataInputStream in) throws IOException {
    ByteArrayOutputStream line = new ByteArrayOutputStream();
    int b;
    while ((b = in.read()) != -1 && b != '\n') line.write(b);
    if (b == -1 && line.size() == 0) return null;
    return line.toString(StandardCharsets.UTF_8);
  }

  // Interrupts every Spark operation of the REPL's session (the command then
  // fails and the REPL answers; its values are kept).
  private static void interrupt(PrintStream log) {
    try {
      Object session = Class.forName("org.apache.spark.sql.SparkSession")
          .getMethod("active").invoke(null);
      session.getClass().getMethod("interruptAll").invoke(session);
    } catch (Throwable t) {
      t.printStackTrace(log);
    }
  }
}
