package modelsplit.spark;

import org.apache.spark.sql.api.java.UDF1;

/**
 * The router's unit hash as a Spark SQL function in the JVM: murmur3_x86_32, seed 0, of the UTF-8
 * bytes of "modelsplit-unit:" + id, unsigned (0 to 2^32 - 1) as a BIGINT; NULL for NULL. It equals
 * clients/python/src/modelsplit/duckdb.py's unit_hash and src/report/reduction.ts's definition.
 *
 * The id is UTF-16 (a Java String, as a JavaScript one): a surrogate pair is one code point (4
 * bytes), a lone surrogate is U+FFFD (EF BF BD) as JavaScript's TextEncoder writes it; Java's own
 * encoder would write '?' there, so the bytes are produced here, into a buffer kept per thread.
 * Registered by modelsplit.spark.register() with spark.udf.registerJavaFunction.
 */
public final class UnitHash implements UDF1<String, Long> {
  private static final long serialVersionUID = 1L;
  private static final byte[] PREFIX = {
    'm', 'o', 'd', 'e', 'l', 's', 'p', 'l', 'i', 't', '-', 'u', 'n', 'i', 't', ':'
  };
  private static final ThreadLocal<byte[]> BUFFER = ThreadLocal.withInitial(() -> new byte[256]);

  @Override
  public Long call(String id) {
    return id == null ? null : hash(id);
  }

  /** murmur3_x86_32("modelsplit-unit:" + id, seed 0), unsigned. */
  public static long hash(String id) {
    int n = id.length();
    int max = PREFIX.length + 3 * n; // a UTF-16 unit is at most 3 UTF-8 bytes (a pair: 4 for 2)
    byte[] buf = BUFFER.get();
    if (buf.length < max) {
      buf = new byte[Math.max(max, 2 * buf.length)];
      BUFFER.set(buf);
    }
    System.arraycopy(PREFIX, 0, buf, 0, PREFIX.length);
    int len = PREFIX.length;
    for (int i = 0; i < n; i++) {
      char c = id.charAt(i);
      if (c < 0x80) {
        buf[len++] = (byte) c;
      } else if (c < 0x800) {
        buf[len++] = (byte) (0xC0 | (c >> 6));
        buf[len++] = (byte) (0x80 | (c & 0x3F));
      } else if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(id.charAt(i + 1))) {
        int cp = Character.toCodePoint(c, id.charAt(++i));
        buf[len++] = (byte) (0xF0 | (cp >> 18));
        buf[len++] = (byte) (0x80 | ((cp >> 12) & 0x3F));
        buf[len++] = (byte) (0x80 | ((cp >> 6) & 0x3F));
        buf[len++] = (byte) (0x80 | (cp & 0x3F));
      } else {
        if (Character.isSurrogate(c)) {
          c = '\uFFFD'; // a lone half, as TextEncoder encodes it
        }
        buf[len++] = (byte) (0xE0 | (c >> 12));
        buf[len++] = (byte) (0x80 | ((c >> 6) & 0x3F));
        buf[len++] = (byte) (0x80 | (c & 0x3F));
      }
    }
    return murmur3(buf, len) & 0xFFFFFFFFL;
  }

  private static int murmur3(byte[] data, int len) {
    final int c1 = 0xCC9E2D51;
    final int c2 = 0x1B873593;
    int h = 0;
    int blocks = len & ~3;
    for (int i = 0; i < blocks; i += 4) {
      int k = (data[i] & 0xFF) | ((data[i + 1] & 0xFF) << 8) | ((data[i + 2] & 0xFF) << 16) | (data[i + 3] << 24);
      k *= c1;
      k = Integer.rotateLeft(k, 15);
      k *= c2;
      h ^= k;
      h = Integer.rotateLeft(h, 13);
      h = h * 5 + 0xE6546B64;
    }
    int k = 0;
    switch (len & 3) {
      case 3:
        k ^= (data[blocks + 2] & 0xFF) << 16;
        // fall through
      case 2:
        k ^= (data[blocks + 1] & 0xFF) << 8;
        // fall through
      case 1:
        k ^= data[blocks] & 0xFF;
        k *= c1;
        k = Integer.rotateLeft(k, 15);
        k *= c2;
        h ^= k;
        break;
      default:
        break;
    }
    h ^= len;
    h ^= h >>> 16;
    h *= 0x85EBCA6B;
    h ^= h >>> 13;
    h *= 0xC2B2AE35;
    h ^= h >>> 16;
    return h;
  }
}
