using ProxyBackup.ObjectStorage;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using ProxyBackup.Catalog;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;

namespace ProxyBackup.Cli;

/// <summary>
/// The appliance's configuration: /etc/proxybackup/config.json (no secrets), then PROXYBACKUP__*
/// environment variables. Secrets live in a separate file readable by its owner only.
/// </summary>
public sealed class AppConfig
{
    public const string DefaultPath = "/etc/proxybackup/config.json";

    public OpenNebulaSection OpenNebula { get; set; } = new();
    public RepositorySection Repository { get; set; } = new();
    public CatalogSection Catalog { get; set; } = new();
    public DevicesSection Devices { get; set; } = new();
    public LimitsSection Limits { get; set; } = new();
    public DaemonSection Daemon { get; set; } = new();
    public NotificationsSection Notifications { get; set; } = new();

    /// <summary>Off-site copies of the repository the daemon makes (docs/operations.md, "Off-site copies").</summary>
    public List<CopySection> Copies { get; set; } = [];

    /// <summary>Where secrets.json is: beside the config file unless set.</summary>
    public string? SecretsFile { get; set; }

    public sealed class OpenNebulaSection
    {
        public string Endpoint { get; set; } = "http://localhost:2633/RPC2";

        /// <summary>
        /// This cloud's name in the repository (docs/operations.md, "Clouds sharing a repository"): its VMs'
        /// restore points are CLOUD.vm-ID; none, vm-ID (a repository only this cloud uses).
        /// </summary>
        [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
        public string? Cloud { get; set; }

        /// <summary>How this cloud's restore points are named.</summary>
        [System.Text.Json.Serialization.JsonIgnore]
        public ProxyBackup.Engine.VmSources Sources => new(string.IsNullOrEmpty(Cloud) ? null : Cloud);
        public string User { get; set; } = "oneadmin";
        public int? ProxyVmId { get; set; }
        public string? CaCertificateFile { get; set; }
        public string? PinnedCertificateSha256 { get; set; }
        public int CallTimeoutSeconds { get; set; } = 60;

        /// <summary>The largest answer accepted from the front-end, in MiB (it costs about 15 times that in memory while decoded).</summary>
        public int MaxAnswerMiB { get; set; } = 64;

        /// <summary>State polls per second that all waits of this appliance share (OneClientOptions.MaxPollsPerSecond).</summary>
        public int MaxPollsPerSecond { get; set; } = 50;

        /// <summary>VM drivers (a host's VM_MAD) that run KVM under another name, where the host does not report HYPERVISOR=kvm.</summary>
        public List<string> AllowedVmDrivers { get; set; } = [];

        /// <summary>How long a snapshot, attach, detach or delete may take before the job gives up on it.</summary>
        public int OperationTimeoutMinutes { get; set; } = 10;

        /// <summary>A copy (save-as, a restore's new image) may take this long plus its size at <see cref="MinimumCopyMBps"/>.</summary>
        public int CopyTimeoutMinutes { get; set; } = 10;
        public int MinimumCopyMBps { get; set; } = 20;
    }

    public sealed class RepositorySection
    {
        /// <summary>A directory, or an S3 location <c>s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]</c> (docs/operations.md, "A repository on S3").</summary>
        public string Path { get; set; } = "/srv/proxybackup";

        /// <summary>The S3 access key of an S3 repository; its secret is in the secrets file (S3SecretAccessKey), never here.</summary>
        [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
        public string? S3AccessKeyId { get; set; }

        /// <summary>
        /// The mount point of the repository's own disk or NFS share ('proxybackup storage setup' sets it):
        /// while nothing is mounted there, the repository is refused (docs/operations.md, "Repository storage").
        /// </summary>
        public string? MountPoint { get; set; }

        /// <summary>The configured repository, with its mount checked; opened with <paramref name="key"/>, else the stored passphrase.</summary>
        public BackupRepository Open(AppSecrets secrets, RepositoryKey? key = null) =>
            BackupRepository.Open(Storage(secrets), key ?? secrets.PassphraseKey(), mountPoint: MountPoint);

        private IRepositoryStorage Storage(AppSecrets secrets) =>
            RepositoryLocation.Storage(Path, S3Credentials.Of(S3AccessKeyId, secrets.S3SecretAccessKey));

        /// <summary>Whether a repository is there (its config): a file in the directory, an object in the bucket; false when the bucket cannot be asked.</summary>
        public bool Holds(AppSecrets secrets)
        {
            if (!S3Location.IsS3(Path)) return File.Exists(System.IO.Path.Combine(Path, "config"));
            try { return Storage(secrets).Read("config") is not null; }
            catch (Exception e) when (e is ProxyBackup.Contracts.UserFacingException or IOException) { return false; }
        }

        /// <summary>The mount a repository at <paramref name="path"/> needs: <see cref="MountPoint"/> when the path lies on it.</summary>
        public string? MountFor(string path) => MountPoint is { } mount && MountTable.Contains(mount, path) ? mount : null;
    }

    /// <summary>One off-site copy: its target, when it runs, and the target's own retention.</summary>
    public sealed class CopySection
    {
        /// <summary>Names the copy in the log, notifications and the secrets file (CopyPassphrases, CopyS3Secrets).</summary>
        public string Name { get; set; } = "";

        /// <summary>The target repository: a directory, or an S3 location; made beforehand with 'repository init' and the same chunk size.</summary>
        public string Repository { get; set; } = "";

        /// <summary>The S3 access key of an S3 target; its secret is CopyS3Secrets[Name] in the secrets file.</summary>
        public string? S3AccessKeyId { get; set; }

        /// <summary>A cron expression; empty: after the backups, once the queue has drained.</summary>
        public string? Schedule { get; set; }

        /// <summary>The retention applied to the target after each copy (KeepLast, KeepDaily, ...); none: the target keeps everything.</summary>
        public ProxyBackup.Contracts.RetentionPolicy? Keep { get; set; }

        /// <summary>The target, opened with its passphrase and S3 secret from <paramref name="secrets"/>.</summary>
        public BackupRepository Open(AppSecrets secrets) =>
            BackupRepository.Open(RepositoryLocation.Storage(Repository, S3Credentials.Of(S3AccessKeyId, secrets.CopyS3Secrets.GetValueOrDefault(Name))),
                secrets.CopyPassphrases.GetValueOrDefault(Name) is { Length: > 0 } passphrase ? RepositoryKey.FromPassphrase(passphrase) : null);
    }

    public sealed class CatalogSection
    {
        /// <summary>The SQLite catalog; its folder also holds this proxy's own state (the daemon's lock, the hot-plug lock) when the catalog is on PostgreSQL.</summary>
        public string Path { get; set; } = "/var/lib/proxybackup/catalog.db";

        /// <summary>
        /// A catalog several proxies share (docs/operations.md, "A shared catalog"): a PostgreSQL
        /// connection string with Host, Port, Database and Username; the password is not written here
        /// but in <see cref="PasswordFile"/>.
        /// </summary>
        [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
        public string? Postgres { get; set; }

        /// <summary>The PostgreSQL password, alone in a file readable by root only (mode 0600).</summary>
        [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
        public string? PasswordFile { get; set; }

        /// <summary>Whether there is a catalog to read (a listing never creates one).</summary>
        public bool Exists => Postgres is not null || File.Exists(Path);

        public SqlCatalog Open(TimeProvider? time = null) =>
            Postgres is { } connection ? SqlCatalog.Postgres(connection, PasswordFile is { } file ? SecretFile.ReadAllText(file).TrimEnd('\n', '\r') : null, time) : new SqlCatalog(Path, time);

        public IEnumerable<string> Problems()
        {
            if (string.IsNullOrWhiteSpace(Path) || !System.IO.Path.IsPathRooted(Path)) yield return "Catalog:Path: an absolute file path";
            if (Postgres is { } connection)
            {
                Npgsql.NpgsqlConnectionStringBuilder? parsed = null;
                try { parsed = new Npgsql.NpgsqlConnectionStringBuilder(connection); }
                catch (ArgumentException) { }
                if (parsed is null || string.IsNullOrWhiteSpace(parsed.Host) || string.IsNullOrWhiteSpace(parsed.Database) || string.IsNullOrWhiteSpace(parsed.Username))
                    yield return "Catalog:Postgres: a connection string with Host, Database and Username, such as 'Host=db.example.org;Port=5432;Database=proxybackup;Username=proxybackup'";
                else if (parsed.Password is not null)
                    yield return "Catalog:Postgres: leave the password out of the connection string; write it alone into a file of mode 0600 named by Catalog:PasswordFile";
            }
            if (PasswordFile is { } passwordFile && !File.Exists(passwordFile)) yield return $"Catalog:PasswordFile: {passwordFile} does not exist";
        }
    }

    public sealed class DevicesSection
    {
        /// <summary>Only for the simulator's world: find attached disks in this directory instead of sysfs.</summary>
        public string? Directory { get; set; }
    }

    public sealed class LimitsSection
    {
        public int MaxConcurrent { get; set; } = 2;
        public int MaxPerHost { get; set; } = 1;
        public int MaxPerDatastore { get; set; } = 2;
        /// <summary>What the chunk buffers of all running jobs may hold together; a job that does not fit waits.</summary>
        public int MemoryMiB { get; set; } = (int)(ChunkMemory.DefaultBudget >> 20);
    }

    public sealed class DaemonSection
    {
        public int TickSeconds { get; set; } = 30;
        public double GcGraceHours { get; set; } = 1;

        /// <summary>When the repository is verified (cron, the appliance's time zone); empty: never.</summary>
        public string VerifySchedule { get; set; } = "30 4 * * *";

        /// <summary>Each scheduled verify reads one of this many parts of the chunks (7: all once a week with a daily schedule).</summary>
        public int VerifyParts { get; set; } = 7;
        public string? WebhookUrl { get; set; }
        public string Socket { get; set; } = "/run/proxybackup/daemon.sock";

        /// <summary>Where file-level restore sessions mount a restore point's file systems (the console's and `files`'s default).</summary>
        public string FilesDirectory { get; set; } = "/run/proxybackup/files";

        /// <summary>
        /// Where the daemon logs: "journal" (systemd's native protocol, with JOB_ID, VM_ID and POLICY
        /// fields), "console" (one line each, one UTC timestamp), or "auto": the journal when systemd
        /// connected the service's output to it (docs/operations.md, "Logs").
        /// </summary>
        public string Log { get; set; } = "auto";
        public string JournalSocket { get; set; } = "/run/systemd/journal/socket";
    }

    /// <summary>Who hears of problems besides the log, and where metrics go (docs/operations.md, "Notifications and metrics").</summary>
    public sealed class NotificationsSection
    {
        /// <summary>E-mail through this SMTP server; null: no mail. Its password is the secrets file's MailPassword.</summary>
        public MailSection? Mail { get; set; }

        /// <summary>A VM waiting this long in the queue is notified once; 0: never.</summary>
        public int LongWaitMinutes { get; set; } = 120;

        /// <summary>When the summary of the last day is sent (cron); empty: never.</summary>
        public string DailySummary { get; set; } = "0 7 * * *";

        /// <summary>Prometheus text file, rewritten every tick (node exporter's textfile collector reads its directory); null: none.</summary>
        public string? MetricsFile { get; set; }
    }

    public sealed class MailSection
    {
        public string Host { get; set; } = "";
        public int Port { get; set; } = 587;

        /// <summary>starttls (required on the submission port), tls (implicit, 465) or none (a relay on this host only).</summary>
        public string Security { get; set; } = "starttls";
        public string? User { get; set; }
        public string From { get; set; } = "";
        public List<string> To { get; set; } = [];
        public string? CaCertificateFile { get; set; }
    }

    /// <summary>Every problem, each naming the key and what is expected.</summary>
    public IReadOnlyList<string> Problems()
    {
        var p = new List<string>();
        if (!Uri.TryCreate(OpenNebula.Endpoint, UriKind.Absolute, out var u) || u.Scheme is not ("http" or "https"))
            p.Add($"OpenNebula:Endpoint: an http(s) URL such as http://front-end:2633/RPC2 (got '{OpenNebula.Endpoint}')");
        if (string.IsNullOrWhiteSpace(OpenNebula.User) || OpenNebula.User.Contains(':', StringComparison.Ordinal)) p.Add("OpenNebula:User: a user name without ':'");
        if (!string.IsNullOrEmpty(OpenNebula.Cloud) && !ProxyBackup.Engine.VmSources.IsCloudName(OpenNebula.Cloud)) p.Add("OpenNebula:Cloud: 1 to 63 of a-z, 0-9 and '-' (this cloud's name in a repository other clouds share), or leave it out");
        if (OpenNebula.ProxyVmId is < 0) p.Add("OpenNebula:ProxyVmId: a VM ID (0 or more), or leave it out to read VMID from the context");
        if (OpenNebula.CaCertificateFile is { } ca && !File.Exists(ca)) p.Add($"OpenNebula:CaCertificateFile: {ca} does not exist");
        if (OpenNebula.PinnedCertificateSha256 is { } pin && pin.Replace(":", "", StringComparison.Ordinal).Length != 64) p.Add("OpenNebula:PinnedCertificateSha256: 64 hex digits (colons allowed)");
        if (OpenNebula.AllowedVmDrivers.Any(d => string.IsNullOrWhiteSpace(d) || d.Any(char.IsWhiteSpace))) p.Add("OpenNebula:AllowedVmDrivers: driver names as the hosts' VM_MAD shows them, without spaces");
        if (OpenNebula.OperationTimeoutMinutes is < 1 or > 1440) p.Add("OpenNebula:OperationTimeoutMinutes: 1 to 1440");
        if (OpenNebula.CopyTimeoutMinutes is < 1 or > 1440) p.Add("OpenNebula:CopyTimeoutMinutes: 1 to 1440");
        if (OpenNebula.MinimumCopyMBps is < 1 or > 100_000) p.Add("OpenNebula:MinimumCopyMBps: 1 to 100000");
        if (OpenNebula.MaxAnswerMiB is < 1 or > 1024) p.Add("OpenNebula:MaxAnswerMiB: 1 to 1024");
        if (OpenNebula.CallTimeoutSeconds is < 5 or > 3600) p.Add("OpenNebula:CallTimeoutSeconds: 5 to 3600");
        if (OpenNebula.MaxPollsPerSecond is < 1 or > 1000) p.Add("OpenNebula:MaxPollsPerSecond: 1 to 1000");
        if (RepositoryLocation.Problem(Repository.Path) is { } location) p.Add($"Repository:Path: {location}");
        if (Repository.MountPoint is { } mount && (!System.IO.Path.IsPathRooted(mount) || S3Location.IsS3(Repository.Path) || !MountTable.Contains(mount, Repository.Path)))
            p.Add($"Repository:MountPoint: an absolute path that holds Repository:Path {Repository.Path}, or leave it out (got '{mount}')");
        p.AddRange(Catalog.Problems());
        if (Limits.MaxConcurrent is < 1 or > 64) p.Add("Limits:MaxConcurrent: 1 to 64");
        if (Limits.MaxPerHost is < 0 or > 64) p.Add("Limits:MaxPerHost: 0 (no limit) to 64");
        if (Limits.MaxPerDatastore is < 0 or > 64) p.Add("Limits:MaxPerDatastore: 0 (no limit) to 64");
        if (Limits.MemoryMiB is < 64 or > 65536) p.Add("Limits:MemoryMiB: 64 to 65536");
        if (Daemon.TickSeconds is < 1 or > 3600) p.Add("Daemon:TickSeconds: 1 to 3600");
        if (Daemon.GcGraceHours is < 0 or > 24 * 30) p.Add("Daemon:GcGraceHours: 0 to 720");
        if (!string.IsNullOrWhiteSpace(Daemon.VerifySchedule))
        {
            try { ProxyBackup.Scheduler.CronSchedule.Parse(Daemon.VerifySchedule); }
            catch (FormatException e) { p.Add($"Daemon:VerifySchedule: a cron expression such as '30 4 * * *', or empty for never ({e.Message})"); }
        }
        if (Daemon.Log is not ("auto" or "journal" or "console")) p.Add($"Daemon:Log: auto, journal or console (got '{Daemon.Log}')");
        if (string.IsNullOrWhiteSpace(Daemon.JournalSocket) || !System.IO.Path.IsPathRooted(Daemon.JournalSocket)) p.Add("Daemon:JournalSocket: an absolute path");
        if (Daemon.VerifyParts is < 1 or > 1000) p.Add("Daemon:VerifyParts: 1 to 1000");
        if (Notifications.Mail is { } mail)
        {
            if (string.IsNullOrWhiteSpace(mail.Host)) p.Add("Notifications:Mail:Host: the SMTP server's name");
            if (mail.Port is < 1 or > 65535) p.Add("Notifications:Mail:Port: 1 to 65535 (587 for STARTTLS)");
            if (mail.Security is not ("starttls" or "tls" or "none")) p.Add($"Notifications:Mail:Security: starttls, tls or none (got '{mail.Security}')");
            if (mail.Security == "none" && mail.Host is not ("localhost" or "127.0.0.1" or "::1")) p.Add("Notifications:Mail:Security: none only for a relay on this host (localhost); use starttls");
            if (!MimeKit.MailboxAddress.TryParse(mail.From, out _)) p.Add("Notifications:Mail:From: an address such as proxybackup@example.org");
            if (mail.To.Count == 0 || mail.To.Any(t => !MimeKit.MailboxAddress.TryParse(t, out _))) p.Add("Notifications:Mail:To: one or more addresses");
            if (mail.CaCertificateFile is { } mailCa && !File.Exists(mailCa)) p.Add($"Notifications:Mail:CaCertificateFile: {mailCa} does not exist");
        }
        if (Notifications.LongWaitMinutes is < 0 or > 7 * 24 * 60) p.Add("Notifications:LongWaitMinutes: 0 (never) to 10080");
        if (!string.IsNullOrWhiteSpace(Notifications.DailySummary))
        {
            try { ProxyBackup.Scheduler.CronSchedule.Parse(Notifications.DailySummary); }
            catch (FormatException e) { p.Add($"Notifications:DailySummary: a cron expression such as '0 7 * * *', or empty for never ({e.Message})"); }
        }
        if (Notifications.MetricsFile is { } metrics && !System.IO.Path.IsPathRooted(metrics)) p.Add("Notifications:MetricsFile: an absolute path ending in .prom, or leave it out");
        if (Daemon.WebhookUrl is { } hook && (!Uri.TryCreate(hook, UriKind.Absolute, out var h) || h.Scheme is not ("http" or "https"))) p.Add("Daemon:WebhookUrl: an http(s) URL, or leave it out");
        for (var i = 0; i < Copies.Count; i++)
        {
            var copy = Copies[i];
            if (string.IsNullOrWhiteSpace(copy.Name) || !copy.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') || Copies.Count(c => c.Name == copy.Name) > 1)
                p.Add($"Copies:{i}:Name: a name of letters, digits, '-' and '_', one per copy");
            if (RepositoryLocation.Problem(copy.Repository) is { } where) p.Add($"Copies:{i}:Repository: {where}");
            else if (copy.Repository.TrimEnd('/') == Repository.Path.TrimEnd('/')) p.Add($"Copies:{i}:Repository: another repository than Repository:Path");
            if (!string.IsNullOrWhiteSpace(copy.Schedule))
            {
                try { ProxyBackup.Scheduler.CronSchedule.Parse(copy.Schedule); }
                catch (FormatException e) { p.Add($"Copies:{i}:Schedule: a cron expression such as '0 6 * * *', or empty for after the backups ({e.Message})"); }
            }
            try { copy.Keep?.Validate(); }
            catch (ArgumentException e) { p.Add($"Copies:{i}:Keep: {e.Message}"); }
        }
        return p;
    }

    /// <summary>How to reach OpenNebula with this configuration and the password from <paramref name="secrets"/>.</summary>
    public OneClientOptions ClientOptions(AppSecrets secrets) => new()
    {
        Endpoint = new Uri(OpenNebula.Endpoint),
        Credentials = new OneCredentials(OpenNebula.User, secrets.OpenNebulaPassword is { Length: > 0 } password
            ? password
            : throw new CliException($"{SecretsFile} has no OpenNebulaPassword: run 'proxybackup configure'.")),
        CaCertificateFile = OpenNebula.CaCertificateFile,
        PinnedCertificateSha256 = OpenNebula.PinnedCertificateSha256,
        CallTimeout = TimeSpan.FromSeconds(OpenNebula.CallTimeoutSeconds),
        MaxAnswerBytes = (long)OpenNebula.MaxAnswerMiB << 20,
        MaxPollsPerSecond = OpenNebula.MaxPollsPerSecond,
    };

    public static AppConfig Load(string path)
    {
        if (!File.Exists(path)) throw new CliException($"No configuration at {path}: run 'proxybackup configure', or give --config FILE.");
        IConfigurationRoot root;
        try
        {
            root = new ConfigurationBuilder().AddJsonFile(System.IO.Path.GetFullPath(path), optional: false, reloadOnChange: false)
                .AddEnvironmentVariables("PROXYBACKUP__").Build();
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or JsonException)
        {
            throw new CliException($"{path} is not valid JSON: {e.InnerException?.Message ?? e.Message}");
        }
        var config = new AppConfig();
        try { root.Bind(config, o => o.ErrorOnUnknownConfiguration = true); }
        catch (InvalidOperationException e) { throw new CliException($"{path}: {e.Message}"); }
        var problems = config.Problems();
        if (problems.Count > 0) throw new CliException($"{path} has invalid values: {string.Join("; ", problems)}.");
        config.SecretsFile ??= System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, "secrets.json");
        return config;
    }

    /// <summary>
    /// A new appliance's configuration, before anything is saved: the secrets file beside configPath,
    /// the endpoint from $ONE_XMLRPC, the proxy VM from OpenNebula's context.
    /// </summary>
    public static AppConfig Defaults(string configPath)
    {
        var config = new AppConfig { SecretsFile = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(configPath))!, "secrets.json") };
        if (Environment.GetEnvironmentVariable("ONE_XMLRPC") is { Length: > 0 } endpoint) config.OpenNebula.Endpoint = endpoint;
        config.OpenNebula.ProxyVmId = ProxyBackup.Engine.ProxyIdentity.FromContext();
        return config;
    }

    /// <summary>Writes the configuration (no secrets in it), readable by all, written atomically.</summary>
    public void Save(string path)
    {
        var problems = Problems();
        if (problems.Count > 0) throw new CliException($"Not saved, invalid values: {string.Join("; ", problems)}.");
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true }));
        File.Move(tmp, path, overwrite: true);
    }
}

/// <summary>The secrets: the OpenNebula password or token and the repository passphrase, in a 0600 file, never logged.</summary>
public sealed class AppSecrets
{
    public string? OpenNebulaPassword { get; set; }
    public string? RepositoryPassphrase { get; set; }

    /// <summary>The SMTP user's password (Notifications:Mail:User).</summary>
    public string? MailPassword { get; set; }

    /// <summary>The secret of Repository:S3AccessKeyId.</summary>
    public string? S3SecretAccessKey { get; set; }

    /// <summary>The passphrase of each encrypted copy target, by the copy's name (Copies:N:Name).</summary>
    public Dictionary<string, string> CopyPassphrases { get; set; } = [];

    /// <summary>The secret of each S3 copy target's access key, by the copy's name.</summary>
    public Dictionary<string, string> CopyS3Secrets { get; set; } = [];

    public override string ToString() => "AppSecrets(hidden)";

    /// <summary>The key of an encrypted repository, from the stored passphrase; null when none is stored.</summary>
    public RepositoryKey? PassphraseKey() => RepositoryPassphrase is { Length: > 0 } passphrase ? RepositoryKey.FromPassphrase(passphrase) : null;

    public static AppSecrets Load(string path)
    {
        if (!File.Exists(path)) throw new CliException($"No secrets file at {path}: run 'proxybackup configure' to set the OpenNebula password.");
        try
        {
            return JsonSerializer.Deserialize<AppSecrets>(SecretFile.ReadAllText(path)) ?? new AppSecrets();
        }
        catch (JsonException e)
        {
            throw new CliException($"{path} is not valid JSON (line {e.LineNumber + 1}).");
        }
    }

    /// <summary>Created with mode 0600 before anything is written into it.</summary>
    public void Save(string path)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        var tmp = path + ".tmp";
        using (var f = new FileStream(tmp, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            JsonSerializer.Serialize(f, this);
        File.SetUnixFileMode(tmp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(tmp, path, overwrite: true);
    }
}
