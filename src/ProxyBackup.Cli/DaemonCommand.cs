using System.CommandLine;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using ProxyBackup.Engine;
using ProxyBackup.Scheduler;

namespace ProxyBackup.Cli;

/// <summary>
/// `proxybackup daemon`: the service systemd runs. Cleans up leftovers at start, then runs due
/// policies within the limits; on SIGTERM running jobs are cancelled, reach a safe point, clean up
/// what they created on the cloud, and the process exits.
/// </summary>
internal static class DaemonCommand
{
    public static readonly Option<string> ConfigFile = new("--config") { Description = "Configuration file.", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("PROXYBACKUP_CONFIG") ?? AppConfig.DefaultPath, Recursive = true };

    public static Command Build()
    {
        var c = new Command("daemon", "Run scheduled protection policies (what the systemd service runs).") { ConfigFile };
        c.SetAction(async (p, ct) =>
        {
            var config = AppConfig.Load(p.GetValue(ConfigFile)!);
            var secrets = AppSecrets.Load(config.SecretsFile!);
            // Before anything touches the cloud or the control socket.
            using var single = DaemonLock.Take(config.Catalog.Path);
            var builder = Host.CreateApplicationBuilder();
            builder.Logging.ClearProviders();
            if (JournalLoggerProvider.Chosen(config.Daemon.Log, config.Daemon.JournalSocket)) builder.Logging.AddProvider(new JournalLoggerProvider(config.Daemon.JournalSocket));
            else builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "yyyy-MM-dd HH:mm:ssZ "; o.UseUtcTimestamp = true; });
            builder.Logging.SetMinimumLevel(LogLevel.Information);
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(10));
            builder.Services.AddSingleton(config);
            builder.Services.AddSingleton(secrets);
            builder.Services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
            builder.Services.AddHostedService<DaemonService>();
            using var host = builder.Build();
            await host.RunAsync(ct).ConfigureAwait(false);
            return Environment.ExitCode;
        });
        return c;
    }
}

internal sealed class DaemonService(AppConfig config, AppSecrets secrets, ILoggerFactory logs, IHostApplicationLifetime lifetime, ISystemdNotifier systemd) : BackgroundService
{
    private readonly ILogger _log = logs.CreateLogger("proxybackup.daemon");
    private readonly ServiceNotifications _systemd = new(systemd);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        EngineHost? host = null;
        while (host is null)
        {
            try
            {
                host = await EngineHost.FromConfigAsync(config, secrets, logs, stoppingToken, servesCluster: true).ConfigureAwait(false);
            }
            catch (ProxyBackup.Repository.RepositoryException e)
            {
                // Reaching the cloud worked; only the repository is missing (a data disk not yet mounted,
                // not yet created): say so and keep trying instead of crash-looping.
                _log.LogError("The repository is not usable: {Error} Policies will not run until it is; retrying every {Seconds} s.", e.Message, config.Daemon.TickSeconds);
                // Up, and waiting for the operator: systemd's start must not hang on it.
                _systemd.Ready($"Waiting for the repository: {e.Message}");
                try { await Task.Delay(TimeSpan.FromSeconds(config.Daemon.TickSeconds), stoppingToken).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _log.LogCritical("Cannot start: {Error}", e.Message);
                Environment.ExitCode = 1;
                lifetime.StopApplication();
                return;
            }
        }
        using (host)
        {
            _log.LogInformation("Started: OpenNebula {Endpoint} as {User}, proxy VM {Proxy}, repository {Repo}", config.OpenNebula.Endpoint, config.OpenNebula.User, host.Steps.Options.ProxyVmId, host.Repository.Root);
            _log.LogInformation("Chunk hashing: {Hashing}", ProxyBackup.Repository.BackupRepository.HashingStatus);
            _systemd.Status("Removing what an earlier run left on the cloud");
            var cleanup = await host.Cleaner.CleanBeforeJobsAsync(stoppingToken).ConfigureAwait(false);
            if (cleanup.Removed > 0 || cleanup.Failures.Count > 0)
                _log.LogWarning("Start-up cleanup removed {Removed} leftover object(s); {Failed} could not be removed yet", cleanup.Removed, cleanup.Failures.Count);
            // File-level restore sessions of processes that died (a reboot empties /run anyway).
            try
            {
                foreach (var session in ProxyBackup.FileRestore.RestorePointFiles.CleanStale(config.Daemon.FilesDirectory))
                    _log.LogWarning("Took down the file-level restore session {Session} left by a process that is gone", session);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { _log.LogWarning("File-level restore sessions could not be looked at: {Error}", e.Message); }
            host.Repository.Memory.Budget = (long)config.Limits.MemoryMiB << 20;
            host.Repository.Memory.ExpectedOperations = config.Limits.MaxConcurrent;
            var perJobMiB = (host.Repository.BackupMemoryAtFewest + (1 << 20) - 1) >> 20;
            if (config.Limits.MaxConcurrent * perJobMiB > config.Limits.MemoryMiB)
                _log.LogWarning("Limits:MemoryMiB {Memory} holds {Fit} backup(s) at once ({PerJob} MiB each at the least), Limits:MaxConcurrent is {Max}: " +
                    "the other jobs will wait for memory before they start. Set Limits:MemoryMiB to {Needed} or more, or lower Limits:MaxConcurrent.",
                    config.Limits.MemoryMiB, Math.Max(1, config.Limits.MemoryMiB / perJobMiB), perJobMiB, config.Limits.MaxConcurrent, config.Limits.MaxConcurrent * perJobMiB);
            var notifier = Notifiers(config, secrets);
            var runner = new PolicyRunner(host.CatalogDb, host.Client, host.Backup, host.Repository, _log, new PolicyRunnerOptions
            {
                ProxyVmId = host.Steps.Options.ProxyVmId, ProxyCluster = host.ProxyCluster,
                Limits = new QueueLimits(config.Limits.MaxConcurrent, config.Limits.MaxPerHost, config.Limits.MaxPerDatastore),
                Since = DateTimeOffset.UtcNow, Notifier = notifier.IsEmpty ? null : notifier, GcGrace = TimeSpan.FromHours(config.Daemon.GcGraceHours),
                LongWait = config.Notifications.LongWaitMinutes > 0 ? TimeSpan.FromMinutes(config.Notifications.LongWaitMinutes) : null,
                SummarySchedule = string.IsNullOrWhiteSpace(config.Notifications.DailySummary) ? null : CronSchedule.Parse(config.Notifications.DailySummary), Jobs = host.CatalogDb,
                VerifySchedule = string.IsNullOrWhiteSpace(config.Daemon.VerifySchedule) ? null : CronSchedule.Parse(config.Daemon.VerifySchedule),
                VerifyParts = config.Daemon.VerifyParts,
                BeforeJobs = async ct => await host.Cleaner.CleanBeforeJobsAsync(ct).ConfigureAwait(false),
                AfterTakeOver = async ct => await host.Cleaner.CleanAfterTheGoneAsync(ct).ConfigureAwait(false), Index = host.CatalogDb, Restore = host.Restore,
                Copies = [.. config.Copies.Select(c => new CopyTarget(c.Name, c.Repository, () => c.Open(secrets),
                    string.IsNullOrWhiteSpace(c.Schedule) ? null : CronSchedule.Parse(c.Schedule), c.Keep))],
            });
            await using var api = new DaemonApi(config.Daemon.Socket, runner, _log);
            try
            {
                api.Start();
            }
            catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
            {
                _log.LogWarning("The local socket {Socket} could not be opened ({Error}); the CLI will work on its own", config.Daemon.Socket, e.Message);
            }
            // Ready once the CLI can hand work over: 'systemctl start' returns when it can.
            _systemd.Ready(StatusLine(runner, host));
            try
            {
                while (!stoppingToken.IsCancellationRequested)
                {
                    try
                    {
                        await runner.TickAsync(stoppingToken).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        _log.LogError("Scheduling step failed: {Error}", e.Message);
                    }
                    _systemd.Status(StatusLine(runner, host));
                    WriteMetrics(runner, host);
                    await runner.WaitForWorkAsync(TimeSpan.FromSeconds(config.Daemon.TickSeconds), stoppingToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }
            _log.LogInformation("Stopping: waiting for running jobs to reach a safe point and clean up");
            _systemd.Stopping($"Stopping: {runner.Status().Running.Count} job(s) reaching a safe point and cleaning up");
            await runner.DrainAsync().ConfigureAwait(false);
            _log.LogInformation("Stopped");
        }
    }

    /// <summary>E-mail and the webhook, as configured; empty when neither is.</summary>
    private NotifierSet Notifiers(AppConfig config, AppSecrets secrets)
    {
        var channels = new List<INotifier>();
        if (config.Daemon.WebhookUrl is { } url) channels.Add(new WebhookNotifier(new HttpClient { Timeout = TimeSpan.FromSeconds(15) }, new Uri(url)));
        if (config.Notifications.Mail is { } mail)
            channels.Add(new MailNotifier(new MailSettings
            {
                Host = mail.Host, Port = mail.Port, Security = mail.Security, User = mail.User, Password = secrets.MailPassword,
                From = mail.From, To = mail.To, CaCertificateFile = mail.CaCertificateFile,
            }));
        return new NotifierSet(channels, _log);
    }

    /// <summary>The Prometheus file, when configured; a failure to write it is logged once per tick and changes nothing else.</summary>
    private void WriteMetrics(PolicyRunner runner, EngineHost host)
    {
        if (config.Notifications.MetricsFile is not { } path) return;
        try
        {
            var (waiting, running) = runner.Status();
            long? total = null, free = null;
            // Space is told for a repository on a local or NFS file system; an S3 bucket has no size to tell.
            if (host.Repository.Storage is ProxyBackup.Repository.LocalRepositoryStorage)
            {
                try { var drive = new DriveInfo(host.Repository.Root); (total, free) = (drive.TotalSize, drive.AvailableFreeSpace); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
            BackupMetrics.Write(path, BackupMetrics.Render(host.CatalogDb, host.CatalogDb, new BackupMetrics.State(running.Count, waiting.Count, total, free)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Microsoft.Data.Sqlite.SqliteException)
        {
            _log.LogWarning("Metrics file {Path} not written: {Error}", path, e.Message);
        }
    }

    /// <summary>systemd's STATUS line: jobs running and waiting, and the next scheduled run; null when the catalog cannot say now (the last line stays).</summary>
    private static string? StatusLine(PolicyRunner runner, EngineHost host)
    {
        var (waiting, running) = runner.Status();
        var jobs = running.Count + waiting.Count == 0 ? "Idle" : $"{running.Count} running, {waiting.Count} waiting";
        try
        {
            var next = ProtectionPolicyRules.NextRuns(host.CatalogDb.Policies(), DateTimeOffset.UtcNow);
            return next.Count == 0 ? $"{jobs}; no enabled policy" : $"{jobs}; next run: {next[0].Policy} at {next[0].At:yyyy-MM-dd HH:mm}Z";
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            return null;
        }
    }
}

/// <summary>
/// What systemd shows of the service (Type=notify, sd_notify(3)): READY once the daemon can take
/// work, a STATUS line kept current for 'systemctl status', STOPPING while jobs clean up.
/// </summary>
internal sealed class ServiceNotifications(ISystemdNotifier notifier)
{
    private string? _status;
    private bool _ready;

    /// <summary>READY the first time; later calls (the repository still missing a minute on) only update the status.</summary>
    public void Ready(string? status)
    {
        if (_ready) Status(status);
        else Send("READY=1", status);
        _ready = true;
    }

    public void Status(string? status)
    {
        if (status is not null && status != _status) Send(null, status);
    }

    public void Stopping(string status) => Send("STOPPING=1", status);

    private void Send(string? state, string? status)
    {
        if (status is null && state is null) return;
        if (status is not null) _status = status;
        // The protocol separates assignments by newlines: a status (an error's message) keeps to one line.
        var message = string.Join('\n', new[] { state, status is null ? null : $"STATUS={status.ReplaceLineEndings(" ")}" }.OfType<string>());
        // systemd gone or restarting: what it shows is not worth stopping a backup for.
        try { if (notifier.IsEnabled) notifier.Notify(new ServiceState(message)); }
        catch (System.Net.Sockets.SocketException) { }
    }
}
