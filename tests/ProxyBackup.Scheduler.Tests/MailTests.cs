using ProxyBackup.TestSupport;

namespace ProxyBackup.Scheduler.Tests;

/// <summary>E-mail notifications against a real SMTP server (aiosmtpd) that requires STARTTLS and AUTH.</summary>
public class MailTests
{
    [SmtpFact]
    public async Task A_notification_is_mailed_over_starttls_with_auth_and_an_untrusted_server_gets_nothing()
    {
        using var dir = new TempDirectory();
        using var server = await SmtpTestServer.StartAsync(dir.Path);
        var settings = new MailSettings
        {
            Host = "127.0.0.1", Port = server.Port, User = SmtpTestServer.User, Password = SmtpTestServer.Password,
            From = "proxybackup@example.org", To = ["ops@example.org", "oncall@example.org"], CaCertificateFile = server.CaCertificateFile, Appliance = "pb-test",
        };
        await new MailNotifier(settings).NotifyAsync(new Notification(NotificationEvent.BackupFailed, "Backup of VM 42 (shop-db) failed", "gold", 42, "shop-db", "The repository's disk is full"), CancellationToken.None);

        var mail = Assert.Single(server.Messages());
        Assert.True(mail.Tls, "the message went before STARTTLS");
        Assert.True(mail.Authenticated);
        Assert.Equal("proxybackup@example.org", mail.MailFrom);
        Assert.Equal(["ops@example.org", "oncall@example.org"], mail.RcptTos);
        Assert.Contains("Subject: [ProxyBackup pb-test] Backup of VM 42 (shop-db) failed", mail.Content, StringComparison.Ordinal);
        Assert.Contains("VM:      42 (shop-db)", mail.Content, StringComparison.Ordinal);
        Assert.Contains("Event:   backup_failed", mail.Content, StringComparison.Ordinal);
        Assert.Contains("The repository's disk is full", mail.Content, StringComparison.Ordinal);

        // The server's certificate is not one the system trusts: without the CA file, nothing is sent.
        await Assert.ThrowsAsync<MailKit.Security.SslHandshakeException>(() => new MailNotifier(settings with { CaCertificateFile = null })
            .NotifyAsync(new Notification(NotificationEvent.VmMissing, "x"), CancellationToken.None));
        // A wrong password is refused by the server.
        await Assert.ThrowsAsync<MailKit.Security.AuthenticationException>(() => new MailNotifier(settings with { Password = "wrong" })
            .NotifyAsync(new Notification(NotificationEvent.VmMissing, "x"), CancellationToken.None));
        Assert.Single(server.Messages());
    }
}
