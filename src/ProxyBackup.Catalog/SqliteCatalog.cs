using System.Globalization;
using Microsoft.Data.Sqlite;
using System.Text.Json;
using ProxyBackup.Contracts;

namespace ProxyBackup.Catalog;

/// <summary>
/// The appliance's catalog in one SQLite file (WAL, so that a killed process loses nothing
/// committed). It holds the cleanup journal and the per-VM job guards; settings, policies and jobs
/// join them with later schema versions. Readable by its owner only.
/// </summary>
public sealed class SqliteCatalog : ICloudJournal, IVmGuard, IJobRecorder, IPolicyStore, IRestorePointList
{
    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE journal (
            id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, kind TEXT NOT NULL,
            vm_id INTEGER NOT NULL, disk_id INTEGER NOT NULL, name TEXT NOT NULL, object_id INTEGER, created TEXT NOT NULL);
        CREATE INDEX journal_job ON journal(job_id);
        CREATE TABLE vm_guards (vm_id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, what TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, since TEXT NOT NULL);
        """,
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, vm_id INTEGER NOT NULL, state TEXT NOT NULL, started TEXT NOT NULL, ended TEXT,
            bytes_read INTEGER NOT NULL DEFAULT 0, bytes_stored INTEGER NOT NULL DEFAULT 0, restore_point TEXT, error TEXT);
        CREATE INDEX jobs_started ON jobs(started);
        """,
        """
        CREATE TABLE policies (name TEXT PRIMARY KEY, definition TEXT NOT NULL, updated TEXT NOT NULL);
        CREATE TABLE policy_runs (policy TEXT PRIMARY KEY, last_slot TEXT NOT NULL);
        """,
        """
        CREATE TABLE restore_points (
            source TEXT NOT NULL, id TEXT NOT NULL, time TEXT NOT NULL, vm_id INTEGER NOT NULL, vm_name TEXT NOT NULL,
            kind TEXT NOT NULL, disks INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (source, id));
        """,
        """
        CREATE TABLE job_logs (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, time TEXT NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL);
        CREATE INDEX job_logs_job ON job_logs(job_id);
        """,
        // Owners: a cleanup removes only what a process that is gone left behind, and a job whose process is gone is interrupted.
        """
        ALTER TABLE journal ADD COLUMN owner_host TEXT;
        ALTER TABLE journal ADD COLUMN owner_pid INTEGER;
        ALTER TABLE journal ADD COLUMN owner_start INTEGER;
        ALTER TABLE jobs ADD COLUMN owner_host TEXT;
        ALTER TABLE jobs ADD COLUMN owner_pid INTEGER;
        ALTER TABLE jobs ADD COLUMN owner_start INTEGER;
        """,
        // Leases: an owner on another host (proxies sharing a catalog) is alive while it renews its lease.
        """
        CREATE TABLE owner_leases (host TEXT NOT NULL, pid INTEGER NOT NULL, start INTEGER NOT NULL, renewed TEXT NOT NULL, PRIMARY KEY (host, pid, start));
        """,
        // A VM guard's process by its start time and kernel boot: a pid reused after a reboot is not the guard's job.
        """
        ALTER TABLE vm_guards ADD COLUMN start INTEGER;
        ALTER TABLE vm_guards ADD COLUMN boot TEXT;
        """,
        // What a job measured beside its length: a drill's recovery time.
        """
        ALTER TABLE jobs ADD COLUMN measured_seconds REAL;
        """,
    ];

    private readonly string _connectionString;
    private readonly TimeProvider _time;

    /// <param name="time">Stamps journal entries, jobs and logs; the journal's in-flight grace is measured from it.</param>
    public SqliteCatalog(string path, TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        if (!File.Exists(Path))
            using (File.Create(Path, 0, FileOptions.None)) { }
        File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _connectionString = new SqliteConnectionStringBuilder { DataSource = Path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true, DefaultTimeout = 30 }.ToString();
        using var c = Open();
        Execute(c, "PRAGMA journal_mode=WAL;");
        Execute(c, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);");
        var version = Convert.ToInt32(Scalar(c, "SELECT COALESCE(MAX(version), 0) FROM schema_version;"), CultureInfo.InvariantCulture);
        if (version > Migrations.Length)
            throw new InvalidOperationException($"The catalog {Path} was written by a newer ProxyBackup (schema {version}); upgrade this one.");
        for (var v = version; v < Migrations.Length; v++)
        {
            using var tx = c.BeginTransaction();
            Execute(c, Migrations[v], tx);
            Execute(c, $"INSERT INTO schema_version VALUES ({v + 1});", tx);
            tx.Commit();
        }
    }

    public string Path { get; }

    private SqliteConnection Open()
    {
        var c = new SqliteConnection(_connectionString);
        c.Open();
        Execute(c, "PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;");
        return c;
    }

    private static void Execute(SqliteConnection c, string sql, SqliteTransaction? tx = null, params (string Name, object? Value)[] parameters)
    {
        using var cmd = Command(c, sql, tx, parameters);
        cmd.ExecuteNonQuery();
    }

    private static object? Scalar(SqliteConnection c, string sql, params (string Name, object? Value)[] parameters)
    {
        using var cmd = Command(c, sql, null, parameters);
        return cmd.ExecuteScalar();
    }

    private static SqliteCommand Command(SqliteConnection c, string sql, SqliteTransaction? tx, (string Name, object? Value)[] parameters)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        foreach (var (name, value) in parameters) cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return cmd;
    }

    // ---- journal ----------------------------------------------------------------------------

    public long Record(string jobId, CloudObjectKind kind, int vmId, int diskId, string name)
    {
        using var c = Open();
        var owner = ProcessOwner.Current;
        return (long)Scalar(c, "INSERT INTO journal (job_id, kind, vm_id, disk_id, name, created, owner_host, owner_pid, owner_start) VALUES ($job, $kind, $vm, $disk, $name, $created, $h, $p, $s) RETURNING id;",
            ("$job", jobId), ("$kind", kind.ToString()), ("$vm", vmId), ("$disk", diskId), ("$name", name), ("$created", _time.GetUtcNow().ToString("o")),
            ("$h", owner.Host), ("$p", owner.Pid), ("$s", owner.StartTicks))!;
    }

    public void SetObjectId(long entryId, int objectId)
    {
        using var c = Open();
        Execute(c, "UPDATE journal SET object_id = $o WHERE id = $id;", null, ("$o", objectId), ("$id", entryId));
    }

    public void Remove(long entryId)
    {
        using var c = Open();
        Execute(c, "DELETE FROM journal WHERE id = $id;", null, ("$id", entryId));
    }

    public IReadOnlyList<JournalEntry> Pending(string? jobId = null)
    {
        using var c = Open();
        using var cmd = Command(c, """
            SELECT j.id, j.job_id, j.kind, j.vm_id, j.disk_id, j.name, j.object_id, j.created, j.owner_host, j.owner_pid, j.owner_start, l.renewed
            FROM journal j LEFT JOIN owner_leases l ON l.host = j.owner_host AND l.pid = j.owner_pid AND l.start = j.owner_start
            WHERE $job IS NULL OR j.job_id = $job ORDER BY j.id;
            """, null, [("$job", jobId)]);
        using var r = cmd.ExecuteReader();
        var list = new List<JournalEntry>();
        while (r.Read())
            list.Add(new JournalEntry(r.GetInt64(0), r.GetString(1), Enum.Parse<CloudObjectKind>(r.GetString(2)), r.GetInt32(3), r.GetInt32(4), r.GetString(5),
                r.IsDBNull(6) ? null : r.GetInt32(6), DateTimeOffset.Parse(r.GetString(7), CultureInfo.InvariantCulture), OwnerAt(r, 8), TimeAt(r, 11)));
        return list;
    }

    private static ProcessOwner? OwnerAt(SqliteDataReader r, int column) =>
        r.IsDBNull(column) ? null : new ProcessOwner(r.GetString(column), r.GetInt32(column + 1), r.GetInt64(column + 2));

    private static DateTimeOffset? TimeAt(SqliteDataReader r, int column) =>
        r.IsDBNull(column) ? null : DateTimeOffset.Parse(r.GetString(column), CultureInfo.InvariantCulture);

    // ---- owners' leases ---------------------------------------------------------------------

    /// <summary>Records that this process is alive now: what it owns is not another proxy's to clean up.</summary>
    public void RenewLease()
    {
        using var c = Open();
        var owner = ProcessOwner.Current;
        Execute(c, "INSERT INTO owner_leases (host, pid, start, renewed) VALUES ($h, $p, $s, $t) ON CONFLICT (host, pid, start) DO UPDATE SET renewed = excluded.renewed;", null,
            ("$h", owner.Host), ("$p", owner.Pid), ("$s", owner.StartTicks), ("$t", _time.GetUtcNow().ToString("o")));
    }

    /// <summary>
    /// Renews this process's lease now and every <see cref="ProcessOwner.LeaseRenewal"/> until
    /// disposed. A renewal the catalog refuses (busy) is tried again at the next one: the lease
    /// outlasts several renewals.
    /// </summary>
    public IDisposable KeepLease() => new Timer(_ =>
    {
        try { RenewLease(); }
        catch (SqliteException) { }
    }, null, TimeSpan.Zero, ProcessOwner.LeaseRenewal);

    // ---- policies ---------------------------------------------------------------------------

    private static readonly JsonSerializerOptions PolicyJson = new() { WriteIndented = false };

    /// <summary>Adds or replaces a policy, as given: the scheduler's ProtectionPolicyRules.Save validates it first.</summary>
    public void SavePolicy(ProtectionPolicy policy)
    {
        using var c = Open();
        Execute(c, "INSERT OR REPLACE INTO policies (name, definition, updated) VALUES ($n, $d, $t);", null,
            ("$n", policy.Name), ("$d", JsonSerializer.Serialize(policy, PolicyJson)), ("$t", _time.GetUtcNow().ToString("o")));
    }

    public bool RemovePolicy(string name)
    {
        using var c = Open();
        Execute(c, "DELETE FROM policy_runs WHERE policy = $n;", null, ("$n", name));
        using var cmd = Command(c, "DELETE FROM policies WHERE name = $n;", null, [("$n", name)]);
        return cmd.ExecuteNonQuery() > 0;
    }

    public IReadOnlyList<ProtectionPolicy> Policies()
    {
        using var c = Open();
        using var cmd = Command(c, "SELECT definition FROM policies ORDER BY name;", null, []);
        using var r = cmd.ExecuteReader();
        var list = new List<ProtectionPolicy>();
        while (r.Read()) list.Add(JsonSerializer.Deserialize<ProtectionPolicy>(r.GetString(0), PolicyJson)!);
        return list;
    }

    public IReadOnlyDictionary<string, DateTimeOffset> LastSlots()
    {
        using var c = Open();
        using var cmd = Command(c, "SELECT policy, last_slot FROM policy_runs;", null, []);
        using var r = cmd.ExecuteReader();
        var map = new Dictionary<string, DateTimeOffset>();
        while (r.Read()) map[r.GetString(0)] = DateTimeOffset.Parse(r.GetString(1), CultureInfo.InvariantCulture);
        return map;
    }

    public void SetLastSlot(string policy, DateTimeOffset slot)
    {
        using var c = Open();
        Execute(c, "INSERT OR REPLACE INTO policy_runs (policy, last_slot) VALUES ($p, $s);", null, ("$p", policy), ("$s", slot.ToString("o")));
    }

    // ---- restore point list ------------------------------------------------------------------

    public void Sync(string source, IReadOnlyList<ListedRestorePoint> points) => Replace("DELETE FROM restore_points WHERE source = $s;", source, points);

    public void ReplaceAll(IReadOnlyList<ListedRestorePoint> points) => Replace("DELETE FROM restore_points;", null, points);

    private void Replace(string delete, string? source, IReadOnlyList<ListedRestorePoint> points)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        Execute(c, delete, tx, ("$s", source));
        foreach (var p in points)
            Execute(c, "INSERT INTO restore_points VALUES ($s, $id, $t, $vm, $name, $kind, $disks, $bytes);", tx,
                ("$s", p.Source), ("$id", p.Id), ("$t", p.Time.ToString("o")), ("$vm", p.VmId), ("$name", p.VmName),
                ("$kind", p.Kind), ("$disks", p.Disks), ("$bytes", p.Bytes));
        tx.Commit();
    }

    public IReadOnlyList<ListedRestorePoint> ListedPoints(string? source = null)
    {
        using var c = Open();
        using var cmd = Command(c, "SELECT source, id, time, vm_id, vm_name, kind, disks, bytes FROM restore_points WHERE $s IS NULL OR source = $s ORDER BY time, id;", null, [("$s", source)]);
        using var r = cmd.ExecuteReader();
        var list = new List<ListedRestorePoint>();
        while (r.Read())
            list.Add(new ListedRestorePoint(r.GetString(0), r.GetString(1), DateTimeOffset.Parse(r.GetString(2), CultureInfo.InvariantCulture), r.GetInt32(3), r.GetString(4), r.GetString(5), r.GetInt32(6), r.GetInt64(7)));
        return list;
    }

    // ---- jobs -------------------------------------------------------------------------------

    public void Started(string jobId, string kind, int vmId)
    {
        using var c = Open();
        var owner = ProcessOwner.Current;
        Execute(c, "INSERT INTO jobs (id, kind, vm_id, state, started, owner_host, owner_pid, owner_start) VALUES ($id, $kind, $vm, 'running', $t, $h, $p, $s);", null,
            ("$id", jobId), ("$kind", kind), ("$vm", vmId), ("$t", _time.GetUtcNow().ToString("o")), ("$h", owner.Host), ("$p", owner.Pid), ("$s", owner.StartTicks));
    }

    public int MarkInterrupted()
    {
        using var c = Open();
        var gone = new List<(string Id, string LastSeen, ProcessOwner? Owner, DateTimeOffset? Lease)>();
        // Last seen: its last log line, or its owner's last lease renewal, whichever is later.
        using (var cmd = Command(c, """
            SELECT j.id, MAX(COALESCE((SELECT MAX(g.time) FROM job_logs g WHERE g.job_id = j.id), j.started), COALESCE(l.renewed, '')),
                   j.owner_host, j.owner_pid, j.owner_start, l.renewed
            FROM jobs j LEFT JOIN owner_leases l ON l.host = j.owner_host AND l.pid = j.owner_pid AND l.start = j.owner_start
            WHERE j.state = 'running';
            """, null, []))
        using (var r = cmd.ExecuteReader())
            while (r.Read())
                gone.Add((r.GetString(0), r.GetString(1), OwnerAt(r, 2), TimeAt(r, 5)));
        var now = _time.GetUtcNow();
        gone.RemoveAll(j => j.Owner?.MayBeAlive(j.Lease, now) == true);
        foreach (var (id, lastSeen, owner, _) in gone)
            Execute(c, "UPDATE jobs SET state = 'interrupted', ended = $t, error = $e WHERE id = $id AND state = 'running';", null,
                ("$t", lastSeen), ("$id", id),
                ("$e", $"interrupted: the process that ran it ({owner?.ToString() ?? "an older version"}) ended; last seen {lastSeen}"));
        return gone.Count;
    }

    public void Finished(string jobId, bool succeeded, long bytesRead, long bytesStored, string? restorePoint, string? error)
    {
        using var c = Open();
        Execute(c, "UPDATE jobs SET state = $s, ended = $t, bytes_read = $r, bytes_stored = $w, restore_point = $p, error = $e WHERE id = $id;", null,
            ("$s", succeeded ? "succeeded" : "failed"), ("$t", _time.GetUtcNow().ToString("o")), ("$r", bytesRead), ("$w", bytesStored),
            ("$p", restorePoint), ("$e", error), ("$id", jobId));
    }

    public void Measured(string jobId, TimeSpan measured)
    {
        using var c = Open();
        Execute(c, "UPDATE jobs SET measured_seconds = $m WHERE id = $id;", null, ("$m", measured.TotalSeconds), ("$id", jobId));
    }

    private const string JobColumns = "id, kind, vm_id, state, started, ended, bytes_read, bytes_stored, restore_point, error, measured_seconds";

    public IReadOnlyList<JobRecord> Recent(int count) =>
        Jobs($"SELECT {JobColumns} FROM jobs ORDER BY started DESC LIMIT $n;", ("$n", count));

    public IReadOnlyList<JobRecord> Since(DateTimeOffset since) =>
        Jobs($"SELECT {JobColumns} FROM jobs WHERE started >= $t ORDER BY started DESC;", ("$t", since.ToUniversalTime().ToString("o")));

    public IReadOnlyDictionary<int, JobRecord> LastJobs(string kind, string? state = null) =>
        Jobs($"SELECT {JobColumns} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY vm_id ORDER BY started DESC) AS latest FROM jobs WHERE kind = $k AND ($s IS NULL OR state = $s)) WHERE latest = 1;",
            ("$k", kind), ("$s", state)).ToDictionary(j => j.VmId);

    public IReadOnlyDictionary<int, int> FailureCounts(string kind)
    {
        using var c = Open();
        using var cmd = Command(c, "SELECT vm_id, COUNT(*) FROM jobs WHERE kind = $k AND state IN ('failed', 'interrupted') GROUP BY vm_id;", null, [("$k", kind)]);
        using var r = cmd.ExecuteReader();
        var counts = new Dictionary<int, int>();
        while (r.Read()) counts[r.GetInt32(0)] = r.GetInt32(1);
        return counts;
    }

    private List<JobRecord> Jobs(string sql, params (string Name, object? Value)[] parameters)
    {
        using var c = Open();
        using var cmd = Command(c, sql, null, parameters);
        using var r = cmd.ExecuteReader();
        var list = new List<JobRecord>();
        while (r.Read())
            list.Add(new JobRecord(r.GetString(0), r.GetString(1), r.GetInt32(2), r.GetString(3), DateTimeOffset.Parse(r.GetString(4), CultureInfo.InvariantCulture),
                r.IsDBNull(5) ? null : DateTimeOffset.Parse(r.GetString(5), CultureInfo.InvariantCulture), r.GetInt64(6), r.GetInt64(7),
                r.IsDBNull(8) ? null : r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9), r.IsDBNull(10) ? null : TimeSpan.FromSeconds(r.GetDouble(10))));
        return list;
    }

    public void Log(string jobId, string level, string message)
    {
        using var c = Open();
        Execute(c, "INSERT INTO job_logs (job_id, time, level, message) VALUES ($j, $t, $l, $m);", null,
            ("$j", jobId), ("$t", _time.GetUtcNow().ToString("o")), ("$l", level), ("$m", message));
    }

    public IReadOnlyList<(DateTimeOffset Time, string Level, string Message)> LogOf(string jobId)
    {
        using var c = Open();
        using var cmd = Command(c, "SELECT time, level, message FROM job_logs WHERE job_id = $j ORDER BY id;", null, [("$j", jobId)]);
        using var r = cmd.ExecuteReader();
        var list = new List<(DateTimeOffset, string, string)>();
        while (r.Read()) list.Add((DateTimeOffset.Parse(r.GetString(0), CultureInfo.InvariantCulture), r.GetString(1), r.GetString(2)));
        return list;
    }

    // ---- VM guards --------------------------------------------------------------------------

    public IDisposable Acquire(int vmId, string jobId, string what)
    {
        using var c = Open();
        using var tx = c.BeginTransaction(System.Data.IsolationLevel.Serializable);
        using (var cmd = Command(c, "SELECT job_id, what, host, pid, since, start, boot FROM vm_guards WHERE vm_id = $vm;", tx, [("$vm", vmId)]))
        using (var r = cmd.ExecuteReader())
        {
            if (r.Read())
            {
                var (holder, holderWhat, host, pid, since) = (r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4));
                var (start, boot) = (r.IsDBNull(5) ? 0 : r.GetInt64(5), r.IsDBNull(6) ? null : r.GetString(6));
                // A guard of a process that died is stale: the cleanup pass deals with its leftovers.
                if (GuardHolderMayBeAlive(host, pid, start, boot))
                    throw new VmBusyException($"VM {vmId} is busy with {holderWhat} job {holder} (since {since}); retry when it has finished.");
            }
        }
        var owner = ProcessOwner.Current;
        Execute(c, "INSERT OR REPLACE INTO vm_guards (vm_id, job_id, what, host, pid, since, start, boot) VALUES ($vm, $job, $what, $host, $pid, $since, $start, $boot);", tx,
            ("$vm", vmId), ("$job", jobId), ("$what", what), ("$host", owner.Host), ("$pid", owner.Pid), ("$since", _time.GetUtcNow().ToString("u")),
            ("$start", owner.StartTicks), ("$boot", (object?)ProcessOwner.BootId ?? DBNull.Value));
        tx.Commit();
        return new Release(this, vmId, jobId);
    }

    /// <summary>
    /// Under this machine's running kernel (same boot id) the guard's process is looked up by pid and
    /// start time; a guard of this host name from another boot is of a machine that rebooted since
    /// (or a new proxy VM on the same catalog disk): its process is gone. A guard of another host
    /// (proxies sharing a catalog) counts as held. A row of an older version (no boot) is judged by
    /// its pid alone, as that version did.
    /// </summary>
    private static bool GuardHolderMayBeAlive(string host, int pid, long start, string? boot) =>
        ProcessOwner.RunsHere(pid, start, boot, pidNamespace: null) ?? (host != Environment.MachineName || (boot is null && ProcessOwner.IsRunning(pid, 0)));

    private sealed class Release(SqliteCatalog catalog, int vmId, string jobId) : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            using var c = catalog.Open();
            Execute(c, "DELETE FROM vm_guards WHERE vm_id = $vm AND job_id = $job;", null, ("$vm", vmId), ("$job", jobId));
        }
    }
}
