using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ProxyBackup.Repository;

/// <summary>What unlocks an encrypted repository: a passphrase or the bytes of a key file.</summary>
public sealed class RepositoryKey
{
    private readonly byte[] _secret;

    private RepositoryKey(byte[] secret, bool isKeyFile)
    {
        _secret = secret;
        IsKeyFile = isKeyFile;
    }

    public bool IsKeyFile { get; }

    public static RepositoryKey FromPassphrase(string passphrase)
    {
        if (string.IsNullOrEmpty(passphrase)) throw new ArgumentException("The repository passphrase is empty.");
        return new RepositoryKey(Encoding.UTF8.GetBytes(passphrase), false);
    }

    public static RepositoryKey FromKeyFile(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 32) throw new RepositoryException($"Key file {path} holds {bytes.Length} bytes; a key file needs at least 32 random bytes (head -c 64 /dev/urandom > {path}).");
        return new RepositoryKey(bytes, true);
    }

    internal byte[] WrappingKey(byte[] salt, int iterations) => IsKeyFile
        ? HKDF.DeriveKey(HashAlgorithmName.SHA256, _secret, 32, salt, Encoding.ASCII.GetBytes("proxybackup key file"))
        : Rfc2898DeriveBytes.Pbkdf2(_secret, salt, iterations, HashAlgorithmName.SHA256, 32);

    public override string ToString() => IsKeyFile ? "key file (hidden)" : "passphrase (hidden)";
}

/// <summary>The two master keys of an encrypted repository, and how they are wrapped in keys/.</summary>
internal sealed class MasterKeys
{
    private const int PassphraseIterations = 600_000;

    private MasterKeys(byte[] dataKey, byte[] nameKey)
    {
        DataKey = dataKey;
        NameKey = nameKey;
    }

    public byte[] DataKey { get; }
    public byte[] NameKey { get; }

    public static MasterKeys Generate() => new(RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32));

    internal sealed record KeyFileJson(
        [property: JsonPropertyName("kdf")] string Kdf,
        [property: JsonPropertyName("iterations")] int Iterations,
        [property: JsonPropertyName("salt")] string Salt,
        [property: JsonPropertyName("wrapped")] string Wrapped,
        [property: JsonPropertyName("created")] DateTimeOffset Created);

    public byte[] Wrap(RepositoryKey key)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var iterations = key.IsKeyFile ? 0 : PassphraseIterations;
        var wrapped = BlobCipher.Seal(key.WrappingKey(salt, iterations), [.. DataKey, .. NameKey], "keys"u8);
        return JsonSerializer.SerializeToUtf8Bytes(new KeyFileJson(key.IsKeyFile ? "HKDF-SHA256" : "PBKDF2-SHA256", iterations,
            Convert.ToBase64String(salt), Convert.ToBase64String(wrapped), DateTimeOffset.UtcNow), RepositoryJson.Default.KeyFileJson);
    }

    /// <summary>More than this is not a key file this program wrote: refused before minutes of PBKDF2.</summary>
    private const int MaxIterations = 10_000_000;

    /// <summary>Tries every key file; the first that opens wins. A damaged one is skipped, and named if none opens.</summary>
    public static MasterKeys Unwrap(IEnumerable<(string Name, byte[] Json)> keyFiles, RepositoryKey key)
    {
        var damaged = new List<string>();
        var tried = 0;
        foreach (var (name, json) in keyFiles)
        {
            try
            {
                var k = JsonSerializer.Deserialize(json, RepositoryJson.Default.KeyFileJson) ?? throw new JsonException("empty");
                if ((k.Kdf == "HKDF-SHA256") != key.IsKeyFile) continue;
                if (!key.IsKeyFile && k.Iterations is < 1 or > MaxIterations) throw new FormatException($"{k.Iterations} iterations");
                var plain = BlobCipher.Open(key.WrappingKey(Convert.FromBase64String(k.Salt), k.Iterations), Convert.FromBase64String(k.Wrapped), "keys"u8);
                if (plain.Length != 64) throw new FormatException($"{plain.Length} bytes of keys");
                return new MasterKeys(plain[..32], plain[32..]);
            }
            catch (CryptographicException)
            {
                tried++; // not this one
            }
            catch (Exception e) when (e is JsonException or FormatException or ArgumentException)
            {
                damaged.Add($"keys/{name} ({e.Message})");
            }
        }
        // A key file that reads but does not open means a wrong passphrase or key file, whatever else lies in keys/.
        if (damaged.Count > 0 && tried == 0)
            throw new CorruptDataException($"No key file opens this repository, and {string.Join(", ", damaged)} cannot be read: put back the key files from your copy of them (docs/operations.md, \"The repository\").");
        throw new WrongKeyException(key.IsKeyFile
            ? "The key file does not open this repository."
            : "Wrong passphrase: it does not open this repository (nothing was changed).");
    }
}

/// <summary>AES-256-GCM sealing: nonce(12) || ciphertext || tag(16), with associated data binding a file to its place.</summary>
internal static class BlobCipher
{
    public const int Overhead = 12 + 16;

    public static byte[] Seal(byte[] key, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> associated)
    {
        var output = new byte[plaintext.Length + Overhead];
        Seal(key, plaintext, associated, output);
        return output;
    }

    public static void Seal(byte[] key, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> associated, Span<byte> output)
    {
        var nonce = output[..12];
        RandomNumberGenerator.Fill(nonce);
        using var gcm = new AesGcm(key, 16);
        gcm.Encrypt(nonce, plaintext, output.Slice(12, plaintext.Length), output.Slice(12 + plaintext.Length, 16), associated);
    }

    public static byte[] Open(byte[] key, ReadOnlySpan<byte> sealedBlob, ReadOnlySpan<byte> associated)
    {
        if (sealedBlob.Length < Overhead) throw new CryptographicException("Encrypted blob is truncated.");
        var plain = new byte[sealedBlob.Length - Overhead];
        Open(key, sealedBlob, associated, plain);
        return plain;
    }

    public static int Open(byte[] key, ReadOnlySpan<byte> sealedBlob, ReadOnlySpan<byte> associated, Span<byte> plaintext)
    {
        if (sealedBlob.Length < Overhead) throw new CryptographicException("Encrypted blob is truncated.");
        var length = sealedBlob.Length - Overhead;
        using var gcm = new AesGcm(key, 16);
        gcm.Decrypt(sealedBlob[..12], sealedBlob.Slice(12, length), sealedBlob.Slice(12 + length, 16), plaintext[..length], associated);
        return length;
    }
}
