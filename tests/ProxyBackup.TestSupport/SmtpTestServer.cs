using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;

namespace ProxyBackup.TestSupport;

/// <summary>
/// A real SMTP server for the tests: Debian's aiosmtpd (python3-aiosmtpd), on 127.0.0.1, that
/// requires STARTTLS with a certificate made here for 127.0.0.1 and AUTH with one user, and writes
/// each message it accepts as a JSON file (sender, recipients, whether TLS and AUTH were used, the
/// message). Stopped by its PID at dispose.
/// </summary>
public sealed class SmtpTestServer : IDisposable
{
    /// <summary>Debian's interpreter: python3-aiosmtpd installs into its dist-packages, not into another Python on PATH.</summary>
    public const string Python = "/usr/bin/python3";

    private const string Script = """
        import asyncio, json, os, ssl, sys
        from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
        cert, key, out, user, password = sys.argv[1:6]
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        class Handler:
            async def handle_DATA(self, server, session, envelope):
                n = len([f for f in os.listdir(out) if f.endswith(".json")])
                path = os.path.join(out, "%d.json" % n)
                with open(path + ".tmp", "w") as f:
                    json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "tls": session.ssl is not None,
                               "authenticated": bool(session.authenticated), "content": envelope.content.decode("utf-8", "replace")}, f)
                os.rename(path + ".tmp", path)
                return "250 OK"
        def authenticate(server, session, envelope, mechanism, data):
            ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
            return AuthResult(success=ok, handled=False)
        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(lambda: SMTP(Handler(), hostname="localhost", tls_context=tls, require_starttls=True,
                                                           authenticator=authenticate, auth_require_tls=True), "127.0.0.1", 0)
            print(server.sockets[0].getsockname()[1], flush=True)
            await asyncio.Event().wait()
        asyncio.run(main())
        """;

    private readonly Process _process;
    private readonly string _directory;

    private SmtpTestServer(Process process, string directory, int port, string caFile)
    {
        _process = process;
        _directory = directory;
        Port = port;
        CaCertificateFile = caFile;
    }

    public int Port { get; }

    /// <summary>The server's self-signed certificate (PEM), to be trusted as its own CA.</summary>
    public string CaCertificateFile { get; }
    public const string User = "backup-mailer";
    public const string Password = "s3cret-for-the-test";

    /// <summary>Why it cannot run here, or null.</summary>
    public static string? Unavailable()
    {
        if (!File.Exists(Python)) return $"needs {Python} (Debian's python3)";
        return ChildProcess.Run(Python, "-c", "import aiosmtpd").Code == 0 ? null : "needs python3-aiosmtpd (scripts/test installs it)";
    }

    public static async Task<SmtpTestServer> StartAsync(string directory)
    {
        Directory.CreateDirectory(Path.Combine(directory, "mail"));
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var certFile = Path.Combine(directory, "smtp-cert.pem");
        var keyFile = Path.Combine(directory, "smtp-key.pem");
        await File.WriteAllTextAsync(certFile, certificate.ExportCertificatePem());
        await File.WriteAllTextAsync(keyFile, key.ExportPkcs8PrivateKeyPem());
        var script = Path.Combine(directory, "smtp-server.py");
        await File.WriteAllTextAsync(script, Script);
        var process = Process.Start(new ProcessStartInfo(Python, [script, certFile, keyFile, Path.Combine(directory, "mail"), User, Password])
            { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
        if (line is null || !int.TryParse(line, out var port))
        {
            process.Kill();
            throw new InvalidOperationException($"The SMTP server did not start: {await process.StandardError.ReadToEndAsync()}");
        }
        return new SmtpTestServer(process, directory, port, certFile);
    }

    /// <summary>A message the server accepted.</summary>
    public sealed record Received(string MailFrom, IReadOnlyList<string> RcptTos, bool Tls, bool Authenticated, string Content);

    /// <summary>The messages accepted so far, in order.</summary>
    public IReadOnlyList<Received> Messages() =>
        [.. Directory.GetFiles(Path.Combine(_directory, "mail"), "*.json").OrderBy(f => int.Parse(Path.GetFileNameWithoutExtension(f), System.Globalization.CultureInfo.InvariantCulture))
            .Select(f => JsonDocument.Parse(File.ReadAllText(f)).RootElement)
            .Select(e => new Received(e.GetProperty("mail_from").GetString()!, [.. e.GetProperty("rcpt_tos").EnumerateArray().Select(r => r.GetString()!)],
                e.GetProperty("tls").GetBoolean(), e.GetProperty("authenticated").GetBoolean(), e.GetProperty("content").GetString()!))];

    /// <summary>Waits (bounded) until <paramref name="count"/> messages have arrived: a daemon sends them on its own time.</summary>
    public async Task<IReadOnlyList<Received>> WaitForMessagesAsync(int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Messages() is var messages && messages.Count < count)
        {
            if (DateTime.UtcNow > deadline) return messages;
            await Task.Delay(100);
        }
        return Messages();
    }

    public void Dispose()
    {
        try { _process.Kill(); _process.WaitForExit(5000); } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}

/// <summary>A test that needs <see cref="SmtpTestServer"/>; skipped, with the reason, where it cannot run.</summary>
public sealed class SmtpFactAttribute : Xunit.FactAttribute
{
    public SmtpFactAttribute()
    {
        if (SmtpTestServer.Unavailable() is { } why) Skip = why;
    }
}
