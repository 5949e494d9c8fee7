using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace ProxyBackup.Scheduler;

/// <summary>How the daemon reaches its mail server (Notifications:Mail; the password lives in the secrets file).</summary>
public sealed record MailSettings
{
    public required string Host { get; init; }
    public int Port { get; init; } = 587;

    /// <summary>"starttls" (the submission port, required: a server that does not offer it is refused), "tls" (implicit, port 465), or "none" (a relay on localhost).</summary>
    public string Security { get; init; } = "starttls";
    public string? User { get; init; }
    public string? Password { get; init; }
    public required string From { get; init; }
    public required IReadOnlyList<string> To { get; init; }

    /// <summary>A private CA that signed the server's certificate; otherwise the system's CAs decide.</summary>
    public string? CaCertificateFile { get; init; }

    /// <summary>Names this appliance in the subject (several proxies mail the same people).</summary>
    public string Appliance { get; init; } = Environment.MachineName;

    public override string ToString() => $"MailSettings({Host}:{Port}, {Security}, to {string.Join(", ", To)})";
}

/// <summary>Sends each notification as a plain-text e-mail over SMTP (MailKit), with STARTTLS unless told otherwise.</summary>
public sealed class MailNotifier(MailSettings settings) : INotifier
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public async Task NotifyAsync(Notification n, CancellationToken ct)
    {
        var message = new MimeMessage();
        message.From.Add(MailboxAddress.Parse(settings.From));
        foreach (var to in settings.To) message.To.Add(MailboxAddress.Parse(to));
        message.Subject = $"[ProxyBackup {settings.Appliance}] {n.Summary}";
        message.Body = new TextPart("plain") { Text = Body(n) };

        using var smtp = new SmtpClient { Timeout = (int)Timeout.TotalMilliseconds };
        if (settings.CaCertificateFile is { } ca) smtp.ServerCertificateValidationCallback = ProxyBackup.XmlRpc.CertificateTrust.IssuedBy(ca);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(Timeout);
        await smtp.ConnectAsync(settings.Host, settings.Port, settings.Security switch
        {
            "tls" => SecureSocketOptions.SslOnConnect,
            "none" => SecureSocketOptions.None,
            _ => SecureSocketOptions.StartTls,
        }, deadline.Token).ConfigureAwait(false);
        if (settings.User is { Length: > 0 } user) await smtp.AuthenticateAsync(user, settings.Password ?? "", deadline.Token).ConfigureAwait(false);
        await smtp.SendAsync(message, deadline.Token).ConfigureAwait(false);
        await smtp.DisconnectAsync(quit: true, deadline.Token).ConfigureAwait(false);
    }

    private static string Body(Notification n)
    {
        var lines = new List<string> { n.Summary, "" };
        if (n.Policy is not null) lines.Add($"Policy:  {n.Policy}");
        if (n.VmId is { } vm) lines.Add($"VM:      {vm}{(string.IsNullOrEmpty(n.VmName) ? "" : $" ({n.VmName})")}");
        lines.Add($"Event:   {n.EventName}");
        lines.Add($"Time:    {n.Time:yyyy-MM-dd HH:mm:ss}Z");
        if (n.Detail is not null) { lines.Add(""); lines.Add(n.Detail); }
        lines.Add("");
        lines.Add("'proxybackup status' on the appliance shows the state of every job; 'proxybackup jobs' lists them.");
        return string.Join("\n", lines) + "\n";
    }
}
