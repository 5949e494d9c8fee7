using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Npgsql;
using ProxyBackup.Contracts;

namespace ProxyBackup.Catalog;

/// <summary>
/// The appliance's catalog: the cleanup journal, the per-VM job guards, jobs and their logs,
/// policies and their run queue, the restore point index and the owners' leases. By default one
/// SQLite file (WAL, so that a killed process loses nothing committed; readable by its owner only);
/// proxies that share a catalog use PostgreSQL (<see cref="Postgres"/>). One schema and one set of
/// statements serve both: the SQL is what the two have in common (upserts, RETURNING, window
/// functions), and where they differ (opening, the write lock, the identity column) it says so.
/// </summary>
public sealed class SqlCatalog : ICloudJournal, IVmGuard, IJobRecorder, IPolicyStore, IRestorePointList, IDisposable
{
    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE journal (
            id {id}, job_id TEXT NOT NULL, kind TEXT NOT NULL,
            vm_id INTEGER NOT NULL, disk_id INTEGER NOT NULL, name TEXT NOT NULL, object_id INTEGER, created TEXT NOT NULL);
        CREATE INDEX journal_job ON journal(job_id);
        CREATE TABLE vm_guards (vm_id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, what TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, since TEXT NOT NULL);
        """,
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, vm_id INTEGER NOT NULL, state TEXT NOT NULL, started TEXT NOT NULL, ended TEXT,
            bytes_read BIGINT NOT NULL DEFAULT 0, bytes_stored BIGINT NOT NULL DEFAULT 0, restore_point TEXT, error TEXT);
        CREATE INDEX jobs_started ON jobs(started);
        """,
        """
        CREATE TABLE policies (name TEXT PRIMARY KEY, definition TEXT NOT NULL, updated TEXT NOT NULL);
        CREATE TABLE policy_runs (policy TEXT PRIMARY KEY, last_slot TEXT NOT NULL);
        """,
        """
        CREATE TABLE restore_points (
            source TEXT NOT NULL, id TEXT NOT NULL, time TEXT NOT NULL, vm_id INTEGER NOT NULL, vm_name TEXT NOT NULL,
            kind TEXT NOT NULL, disks INTEGER NOT NULL, bytes BIGINT NOT NULL, PRIMARY KEY (source, id));
        """,
        """
        CREATE TABLE job_logs (id {id}, job_id TEXT NOT NULL, time TEXT NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL);
        CREATE INDEX job_logs_job ON job_logs(job_id);
        """,
        // Owners: a cleanup removes only what a process that is gone left behind, and a job whose process is gone is interrupted.
        """
        ALTER TABLE journal ADD COLUMN owner_host TEXT;
        ALTER TABLE journal ADD COLUMN owner_pid INTEGER;
        ALTER TABLE journal ADD COLUMN owner_start BIGINT;
        ALTER TABLE jobs ADD COLUMN owner_host TEXT;
        ALTER TABLE jobs ADD COLUMN owner_pid INTEGER;
        ALTER TABLE jobs ADD COLUMN owner_start BIGINT;
        """,
        // Leases: an owner on another host (proxies sharing a catalog) is alive while it renews its lease.
        """
        CREATE TABLE owner_leases (host TEXT NOT NULL, pid INTEGER NOT NULL, start BIGINT NOT NULL, renewed TEXT NOT NULL, PRIMARY KEY (host, pid, start));
        """,
        // A VM guard's process by its start time and kernel boot: a pid reused after a reboot is not the guard's job.
        """
        ALTER TABLE vm_guards ADD COLUMN start BIGINT;
        ALTER TABLE vm_guards ADD COLUMN boot TEXT;
        """,
        // What a job measured beside its length: a drill's recovery time.
        """
        ALTER TABLE jobs ADD COLUMN measured_seconds DOUBLE PRECISION;
        """,
        // Proxies sharing a catalog: a lease names its machine's boot (cloned proxies share a host
        // name), and a policy's run is one queue the proxies claim VMs from (docs/architecture.md, "Several proxies").
        """
        ALTER TABLE owner_leases ADD COLUMN boot TEXT;
        CREATE TABLE run_queue (
            policy TEXT NOT NULL, slot TEXT NOT NULL, vm_id INTEGER NOT NULL, vm_name TEXT NOT NULL, start_by TEXT, state TEXT NOT NULL,
            owner_host TEXT, owner_pid INTEGER, owner_start BIGINT, outcome TEXT, updated TEXT NOT NULL, PRIMARY KEY (policy, slot, vm_id));
        """,
        // A lease names the cluster its proxy VM runs in: a VM whose disks no live proxy's cluster reaches is told, not left waiting.
        """
        ALTER TABLE owner_leases ADD COLUMN cluster INTEGER;
        """,
    ];

    private readonly TimeProvider _time;
    private readonly string? _sqlite;
    private readonly NpgsqlDataSource? _postgres;

    /// <summary>A catalog in the SQLite file <paramref name="path"/> (created, readable by its owner only).</summary>
    /// <param name="time">Stamps journal entries, jobs and logs; the journal's in-flight grace is measured from it.</param>
    public SqlCatalog(string path, TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        // Opened, not created over: two processes opening a new catalog at once must not truncate what the first one wrote.
        using (new FileStream(Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite)) { }
        File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _sqlite = new SqliteConnectionStringBuilder { DataSource = Path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true, DefaultTimeout = 30 }.ToString();
        using (var c = Open()) Execute(c, "PRAGMA journal_mode=WAL;");
        Migrate();
    }

    private SqlCatalog(NpgsqlDataSource postgres, string where, TimeProvider? time)
    {
        _time = time ?? TimeProvider.System;
        _postgres = postgres;
        Path = where;
        Migrate();
    }

    /// <summary>
    /// A catalog in a PostgreSQL database that several proxies share (docs/operations.md, "A shared
    /// catalog"). <paramref name="connectionString"/> names the server, database and user;
    /// the password, when there is one, comes apart from it (a file readable by root only), so that
    /// it is never in the configuration, a message or a log.
    /// </summary>
    public static SqlCatalog Postgres(string connectionString, string? password = null, TimeProvider? time = null)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        var where = $"postgresql://{builder.Username}@{builder.Host}:{builder.Port}/{builder.Database}";
        if (password is not null) builder.Password = password;
        // A dead server is noticed in seconds, not after the driver's default of 15 s per connection.
        if (!connectionString.Contains("Timeout", StringComparison.OrdinalIgnoreCase)) builder.Timeout = 10;
        return new SqlCatalog(NpgsqlDataSource.Create(builder.ConnectionString), where, time);
    }

    /// <summary>The SQLite file, or the PostgreSQL server and database (never a password).</summary>
    public string Path { get; }

    public bool IsShared => _postgres is not null;

    public void Dispose() => _postgres?.Dispose();

    /// <summary>
    /// Applies the migrations this catalog lacks, each in its own transaction that first takes the
    /// catalog's write lock and reads the version again: proxies starting together migrate once.
    /// </summary>
    private void Migrate()
    {
        using var c = Open();
        using (var create = BeginExclusive(c, SchemaLock))
        {
            Execute(c, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);", create);
            create.Commit();
        }
        for (var v = 0; v < Migrations.Length; v++)
        {
            using var tx = BeginExclusive(c, SchemaLock);
            var version = Convert.ToInt32(Scalar(c, tx, "SELECT COALESCE(MAX(version), 0) FROM schema_version;"), CultureInfo.InvariantCulture);
            if (version > Migrations.Length)
                throw new InvalidOperationException($"The catalog {Path} was written by a newer ProxyBackup (schema {version}); upgrade this one.");
            if (version > v) continue;
            Execute(c, Migrations[v].Replace("{id}", _postgres is null ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGSERIAL PRIMARY KEY", StringComparison.Ordinal), tx);
            Execute(c, $"INSERT INTO schema_version VALUES ({v + 1});", tx);
            tx.Commit();
        }
    }

    private DbConnection Open()
    {
        if (_postgres is not null) return _postgres.OpenConnection();
        var c = new SqliteConnection(_sqlite);
        c.Open();
        Execute(c, "PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;");
        return c;
    }

    /// <summary>
    /// A transaction that holds the catalog's write lock for <paramref name="key"/> from its first
    /// statement: SQLite's BEGIN IMMEDIATE (one writer at a time), PostgreSQL's transaction-scoped
    /// advisory lock on the key (<see cref="SchemaLock"/>, or a VM id for that VM's guard).
    /// </summary>
    private const int SchemaLock = -1;

    private DbTransaction BeginExclusive(DbConnection c, long key)
    {
        if (_postgres is null) return c.BeginTransaction(System.Data.IsolationLevel.Serializable);
        var tx = c.BeginTransaction();
        Execute(c, "SELECT pg_advisory_xact_lock(7201, CAST(@k AS INTEGER));", tx, ("@k", key));
        return tx;
    }

    private static int Execute(DbConnection c, string sql, DbTransaction? tx = null, params (string Name, object? Value)[] parameters)
    {
        using var cmd = Command(c, sql, tx, parameters);
        return cmd.ExecuteNonQuery();
    }

    private static object? Scalar(DbConnection c, DbTransaction? tx, string sql, params (string Name, object? Value)[] parameters)
    {
        using var cmd = Command(c, sql, tx, parameters);
        return cmd.ExecuteScalar();
    }

    private static DbCommand Command(DbConnection c, string sql, DbTransaction? tx, (string Name, object? Value)[] parameters)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        foreach (var (name, value) in parameters)
        {
            var parameter = cmd.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value ?? DBNull.Value;
            cmd.Parameters.Add(parameter);
        }
        return cmd;
    }

    /// <summary>Rows of <paramref name="sql"/>, each read by <paramref name="read"/>.</summary>
    private List<T> Query<T>(string sql, Func<DbDataReader, T> read, params (string Name, object? Value)[] parameters)
    {
        using var c = Open();
        using var cmd = Command(c, sql, null, parameters);
        using var r = cmd.ExecuteReader();
        var list = new List<T>();
        while (r.Read()) list.Add(read(r));
        return list;
    }

    /// <summary>A moment as the catalog stores it: ISO 8601 in UTC, so that text order is time order.</summary>
    private static string Stamp(DateTimeOffset time) => time.ToUniversalTime().ToString("o", CultureInfo.InvariantCulture);

    private static DateTimeOffset Moment(string text) => DateTimeOffset.Parse(text, CultureInfo.InvariantCulture);

    // ---- journal ----------------------------------------------------------------------------

    public long Record(string jobId, CloudObjectKind kind, int vmId, int diskId, string name)
    {
        using var c = Open();
        var owner = ProcessOwner.Current;
        return Convert.ToInt64(Scalar(c, null, "INSERT INTO journal (job_id, kind, vm_id, disk_id, name, created, owner_host, owner_pid, owner_start) VALUES (@job, @kind, @vm, @disk, @name, @created, @h, @p, @s) RETURNING id;",
            ("@job", jobId), ("@kind", kind.ToString()), ("@vm", vmId), ("@disk", diskId), ("@name", name), ("@created", Stamp(_time.GetUtcNow())),
            ("@h", owner.Host), ("@p", owner.Pid), ("@s", owner.StartTicks)), CultureInfo.InvariantCulture);
    }

    public void SetObjectId(long entryId, int objectId)
    {
        using var c = Open();
        Execute(c, "UPDATE journal SET object_id = @o WHERE id = @id;", null, ("@o", objectId), ("@id", entryId));
    }

    public void Remove(long entryId)
    {
        using var c = Open();
        Execute(c, "DELETE FROM journal WHERE id = @id;", null, ("@id", entryId));
    }

    public IReadOnlyList<JournalEntry> Pending(string? jobId = null) => Query($"""
        SELECT j.id, j.job_id, j.kind, j.vm_id, j.disk_id, j.name, j.object_id, j.created, {OwnerColumns("j")}
        FROM journal j {LeaseJoin("j")}
        WHERE CAST(@job AS TEXT) IS NULL OR j.job_id = @job ORDER BY j.id;
        """,
        r => new JournalEntry(r.GetInt64(0), r.GetString(1), Enum.Parse<CloudObjectKind>(r.GetString(2)), r.GetInt32(3), r.GetInt32(4), r.GetString(5),
            r.IsDBNull(6) ? null : r.GetInt32(6), Moment(r.GetString(7)), OwnerAt(r, 8), LeaseAt(r, 8)),
        ("@job", jobId));

    // ---- owners' leases ---------------------------------------------------------------------

    /// <summary>An owner's columns (host, pid, start) and its lease's (renewed, boot), read by <see cref="OwnerAt"/> and <see cref="LeaseAt"/>.</summary>
    private static string OwnerColumns(string table) => $"{table}.owner_host, {table}.owner_pid, {table}.owner_start, l.renewed, l.boot";

    private static string LeaseJoin(string table) =>
        $"LEFT JOIN owner_leases l ON l.host = {table}.owner_host AND l.pid = {table}.owner_pid AND l.start = {table}.owner_start";

    private static ProcessOwner? OwnerAt(DbDataReader r, int column) =>
        r.IsDBNull(column) ? null : new ProcessOwner(r.GetString(column), r.GetInt32(column + 1), r.GetInt64(column + 2), r.IsDBNull(column + 4) ? null : r.GetString(column + 4));

    private static DateTimeOffset? LeaseAt(DbDataReader r, int ownerColumn) =>
        r.IsDBNull(ownerColumn + 3) ? null : Moment(r.GetString(ownerColumn + 3));

    /// <summary>
    /// Records that this process is alive now, on this boot of this machine: what it owns is not
    /// another proxy's to clean up or take over. <paramref name="cluster"/>: the cluster its proxy
    /// VM runs in, whose datastores it can attach images from (null: not a proxy's daemon).
    /// </summary>
    public void RenewLease(int? cluster = null)
    {
        using var c = Open();
        var owner = ProcessOwner.Current;
        Execute(c, """
            INSERT INTO owner_leases (host, pid, start, renewed, boot, cluster) VALUES (@h, @p, @s, @t, @b, @c)
            ON CONFLICT (host, pid, start) DO UPDATE SET renewed = excluded.renewed, boot = excluded.boot, cluster = excluded.cluster;
            """, null,
            ("@h", owner.Host), ("@p", owner.Pid), ("@s", owner.StartTicks), ("@t", Stamp(_time.GetUtcNow())), ("@b", owner.Boot), ("@c", cluster));
    }

    public IReadOnlySet<int> ServedClusters() =>
        Query("SELECT DISTINCT cluster FROM owner_leases WHERE cluster IS NOT NULL AND renewed >= @since;", r => r.GetInt32(0),
            ("@since", Stamp(_time.GetUtcNow() - ProcessOwner.Lease))).ToHashSet();

    /// <summary>
    /// Renews this process's lease now and every <see cref="ProcessOwner.LeaseRenewal"/> until
    /// disposed. A renewal the catalog refuses (busy, a server restarting) is tried again at the
    /// next one: the lease outlasts several renewals.
    /// </summary>
    public IDisposable KeepLease(int? cluster = null) => new Timer(_ =>
    {
        try { RenewLease(cluster); }
        catch (DbException) { }
    }, null, TimeSpan.Zero, ProcessOwner.LeaseRenewal);

    // ---- policies ---------------------------------------------------------------------------

    private static readonly JsonSerializerOptions PolicyJson = new() { WriteIndented = false };

    /// <summary>Adds or replaces a policy, as given: the scheduler's ProtectionPolicyRules.Save validates it first.</summary>
    public void SavePolicy(ProtectionPolicy policy)
    {
        using var c = Open();
        Execute(c, "INSERT INTO policies (name, definition, updated) VALUES (@n, @d, @t) ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated = excluded.updated;", null,
            ("@n", policy.Name), ("@d", JsonSerializer.Serialize(policy, PolicyJson)), ("@t", Stamp(_time.GetUtcNow())));
    }

    public bool RemovePolicy(string name)
    {
        using var c = Open();
        Execute(c, "DELETE FROM policy_runs WHERE policy = @n;", null, ("@n", name));
        Execute(c, "DELETE FROM run_queue WHERE policy = @n;", null, ("@n", name));
        return Execute(c, "DELETE FROM policies WHERE name = @n;", null, ("@n", name)) > 0;
    }

    public IReadOnlyList<ProtectionPolicy> Policies() =>
        Query("SELECT definition FROM policies ORDER BY name;", r => JsonSerializer.Deserialize<ProtectionPolicy>(r.GetString(0), PolicyJson)!);

    public IReadOnlyDictionary<string, DateTimeOffset> LastSlots() =>
        Query("SELECT policy, last_slot FROM policy_runs;", r => (Policy: r.GetString(0), Slot: Moment(r.GetString(1)))).ToDictionary(p => p.Policy, p => p.Slot);

    public void SetLastSlot(string policy, DateTimeOffset slot)
    {
        using var c = Open();
        Execute(c, "INSERT INTO policy_runs (policy, last_slot) VALUES (@p, @s) ON CONFLICT (policy) DO UPDATE SET last_slot = excluded.last_slot;", null, ("@p", policy), ("@s", Stamp(slot)));
    }

    // ---- the fleet's run queue --------------------------------------------------------------

    public bool PlanRun(string policy, DateTimeOffset slot, DateTimeOffset? startBy, IReadOnlyList<(int Id, string Name)> vms)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        // The row lock of the policy's slot decides: a second planner waits for the first and then finds the slot taken.
        var planned = Execute(c, """
            INSERT INTO policy_runs (policy, last_slot) VALUES (@p, @s)
            ON CONFLICT (policy) DO UPDATE SET last_slot = excluded.last_slot WHERE policy_runs.last_slot < excluded.last_slot;
            """, tx, ("@p", policy), ("@s", Stamp(slot))) == 1;
        if (!planned) return false;
        // Earlier runs' leftovers go: what is queued for a new slot supersedes them. A VM still held by
        // its process stays until that process ends it; a held one of a dead process is not taken over.
        Execute(c, "DELETE FROM run_queue WHERE policy = @p AND slot < @s AND state <> 'running';", tx, ("@p", policy), ("@s", Stamp(slot)));
        var now = Stamp(_time.GetUtcNow());
        foreach (var (id, name) in vms)
            Execute(c, "INSERT INTO run_queue (policy, slot, vm_id, vm_name, start_by, state, updated) VALUES (@p, @s, @vm, @name, @by, 'queued', @t);", tx,
                ("@p", policy), ("@s", Stamp(slot)), ("@vm", id), ("@name", name), ("@by", startBy is { } b ? Stamp(b) : null), ("@t", now));
        tx.Commit();
        return true;
    }

    public IReadOnlyList<QueuedRun> ClaimableRuns()
    {
        var now = _time.GetUtcNow();
        return [.. Query($"""
            SELECT q.policy, q.slot, q.vm_id, q.vm_name, q.start_by, {OwnerColumns("q")}
            FROM run_queue q JOIN policy_runs r ON r.policy = q.policy AND r.last_slot = q.slot {LeaseJoin("q")}
            WHERE q.state IN ('queued', 'running') ORDER BY q.slot, q.vm_id;
            """,
            r => (Run: new QueuedRun(r.GetString(0), Moment(r.GetString(1)), r.GetInt32(2), r.GetString(3), r.IsDBNull(4) ? null : Moment(r.GetString(4)), OwnerAt(r, 5)), Lease: LeaseAt(r, 5)))
            .Where(q => q.Run.Owner is not { } owner || !owner.MayBeAlive(q.Lease, now))
            .Select(q => q.Run)];
    }

    public bool ClaimRun(QueuedRun run)
    {
        using var c = Open();
        var me = ProcessOwner.Current;
        // Taken only from the state it was seen in: queued, or held by the very process seen gone. The
        // row lock makes a second claimer wait for the first and then find the row changed.
        return Execute(c, """
            UPDATE run_queue SET state = 'running', owner_host = @h, owner_pid = @p, owner_start = @s, updated = @t
            WHERE policy = @policy AND slot = @slot AND vm_id = @vm
              AND (state = 'queued' AND CAST(@oh AS TEXT) IS NULL
                   OR state = 'running' AND owner_host = @oh AND owner_pid = @op AND owner_start = @os);
            """, null, ("@h", me.Host), ("@p", me.Pid), ("@s", me.StartTicks), ("@t", Stamp(_time.GetUtcNow())),
            ("@policy", run.Policy), ("@slot", Stamp(run.Slot)), ("@vm", run.VmId),
            ("@oh", run.Owner?.Host), ("@op", run.Owner?.Pid), ("@os", run.Owner?.StartTicks)) == 1;
    }

    public void EndRun(QueuedRun run, string? outcome)
    {
        using var c = Open();
        var me = ProcessOwner.Current;
        Execute(c, """
            UPDATE run_queue SET state = CASE WHEN CAST(@o AS TEXT) IS NULL THEN 'queued' ELSE 'done' END, outcome = @o, updated = @t,
                owner_host = CASE WHEN CAST(@o AS TEXT) IS NULL THEN NULL ELSE owner_host END
            WHERE policy = @policy AND slot = @slot AND vm_id = @vm AND owner_host = @h AND owner_pid = @p AND owner_start = @s;
            """, null, ("@o", outcome), ("@t", Stamp(_time.GetUtcNow())), ("@policy", run.Policy), ("@slot", Stamp(run.Slot)), ("@vm", run.VmId),
            ("@h", me.Host), ("@p", me.Pid), ("@s", me.StartTicks));
    }

    // ---- restore point list ------------------------------------------------------------------

    public void Sync(string source, IReadOnlyList<ListedRestorePoint> points) => Replace("DELETE FROM restore_points WHERE source = @s;", source, points);

    public void ReplaceAll(IReadOnlyList<ListedRestorePoint> points) => Replace("DELETE FROM restore_points;", null, points);

    private void Replace(string delete, string? source, IReadOnlyList<ListedRestorePoint> points)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        Execute(c, delete, tx, ("@s", source));
        foreach (var p in points)
            Execute(c, "INSERT INTO restore_points VALUES (@s, @id, @t, @vm, @name, @kind, @disks, @bytes);", tx,
                ("@s", p.Source), ("@id", p.Id), ("@t", Stamp(p.Time)), ("@vm", p.VmId), ("@name", p.VmName),
                ("@kind", p.Kind), ("@disks", p.Disks), ("@bytes", p.Bytes));
        tx.Commit();
    }

    public IReadOnlyList<ListedRestorePoint> ListedPoints(string? source = null) => Query(
        "SELECT source, id, time, vm_id, vm_name, kind, disks, bytes FROM restore_points WHERE CAST(@s AS TEXT) IS NULL OR source = @s ORDER BY time, id;",
        r => new ListedRestorePoint(r.GetString(0), r.GetString(1), Moment(r.GetString(2)), r.GetInt32(3), r.GetString(4), r.GetString(5), r.GetInt32(6), r.GetInt64(7)),
        ("@s", source));

    // ---- jobs -------------------------------------------------------------------------------

    public void Started(string jobId, string kind, int vmId)
    {
        using var c = Open();
        var owner = ProcessOwner.Current;
        Execute(c, "INSERT INTO jobs (id, kind, vm_id, state, started, owner_host, owner_pid, owner_start) VALUES (@id, @kind, @vm, 'running', @t, @h, @p, @s);", null,
            ("@id", jobId), ("@kind", kind), ("@vm", vmId), ("@t", Stamp(_time.GetUtcNow())), ("@h", owner.Host), ("@p", owner.Pid), ("@s", owner.StartTicks));
    }

    public int MarkInterrupted()
    {
        var now = _time.GetUtcNow();
        var gone = Query($"""
            SELECT j.id, COALESCE((SELECT MAX(g.time) FROM job_logs g WHERE g.job_id = j.id), j.started), {OwnerColumns("j")}
            FROM jobs j {LeaseJoin("j")} WHERE j.state = 'running';
            """, r => (Id: r.GetString(0), LastLine: r.GetString(1), Owner: OwnerAt(r, 2), Lease: LeaseAt(r, 2)))
            .Where(j => j.Owner?.MayBeAlive(j.Lease, now) != true).ToList();
        using var c = Open();
        foreach (var (id, lastLine, owner, lease) in gone)
        {
            // Last seen: its last log line, or its owner's last lease renewal, whichever is later.
            var lastSeen = lease is { } l && l > Moment(lastLine) ? Stamp(l) : lastLine;
            Execute(c, "UPDATE jobs SET state = 'interrupted', ended = @t, error = @e WHERE id = @id AND state = 'running';", null,
                ("@t", lastSeen), ("@id", id),
                ("@e", $"interrupted: the process that ran it ({owner?.ToString() ?? "an older version"}) ended; last seen {lastSeen}"));
        }
        return gone.Count;
    }

    public void Finished(string jobId, bool succeeded, long bytesRead, long bytesStored, string? restorePoint, string? error)
    {
        using var c = Open();
        Execute(c, "UPDATE jobs SET state = @s, ended = @t, bytes_read = @r, bytes_stored = @w, restore_point = @p, error = @e WHERE id = @id;", null,
            ("@s", succeeded ? "succeeded" : "failed"), ("@t", Stamp(_time.GetUtcNow())), ("@r", bytesRead), ("@w", bytesStored),
            ("@p", restorePoint), ("@e", error), ("@id", jobId));
    }

    public void Measured(string jobId, TimeSpan measured)
    {
        using var c = Open();
        Execute(c, "UPDATE jobs SET measured_seconds = @m WHERE id = @id;", null, ("@m", measured.TotalSeconds), ("@id", jobId));
    }

    private const string JobColumns = "id, kind, vm_id, state, started, ended, bytes_read, bytes_stored, restore_point, error, measured_seconds";

    public IReadOnlyList<JobRecord> Recent(int count) =>
        Jobs($"SELECT {JobColumns} FROM jobs ORDER BY started DESC LIMIT @n;", ("@n", count));

    public IReadOnlyList<JobRecord> Since(DateTimeOffset since) =>
        Jobs($"SELECT {JobColumns} FROM jobs WHERE started >= @t ORDER BY started DESC;", ("@t", Stamp(since)));

    public IReadOnlyDictionary<int, JobRecord> LastJobs(string kind, string? state = null) =>
        Jobs($"""
            SELECT {JobColumns} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY vm_id ORDER BY started DESC) AS latest FROM jobs
                                      WHERE kind = @k AND (CAST(@s AS TEXT) IS NULL OR state = @s)) AS ranked
            WHERE latest = 1;
            """, ("@k", kind), ("@s", state)).ToDictionary(j => j.VmId);

    public IReadOnlyDictionary<int, int> FailureCounts(string kind) =>
        Query("SELECT vm_id, COUNT(*) FROM jobs WHERE kind = @k AND state IN ('failed', 'interrupted') GROUP BY vm_id;", r => (Vm: r.GetInt32(0), Count: r.GetInt32(1)), ("@k", kind))
            .ToDictionary(f => f.Vm, f => f.Count);

    private List<JobRecord> Jobs(string sql, params (string Name, object? Value)[] parameters) => Query(sql,
        r => new JobRecord(r.GetString(0), r.GetString(1), r.GetInt32(2), r.GetString(3), Moment(r.GetString(4)),
            r.IsDBNull(5) ? null : Moment(r.GetString(5)), r.GetInt64(6), r.GetInt64(7),
            r.IsDBNull(8) ? null : r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9), r.IsDBNull(10) ? null : TimeSpan.FromSeconds(r.GetDouble(10))),
        parameters);

    public void Log(string jobId, string level, string message)
    {
        using var c = Open();
        Execute(c, "INSERT INTO job_logs (job_id, time, level, message) VALUES (@j, @t, @l, @m);", null,
            ("@j", jobId), ("@t", Stamp(_time.GetUtcNow())), ("@l", level), ("@m", message));
    }

    public IReadOnlyList<(DateTimeOffset Time, string Level, string Message)> LogOf(string jobId) =>
        Query("SELECT time, level, message FROM job_logs WHERE job_id = @j ORDER BY id;", r => (Moment(r.GetString(0)), r.GetString(1), r.GetString(2)), ("@j", jobId));

    // ---- VM guards --------------------------------------------------------------------------

    public IDisposable Acquire(int vmId, string jobId, string what)
    {
        using var c = Open();
        using var tx = BeginExclusive(c, vmId);
        using (var cmd = Command(c, """
            SELECT g.job_id, g.what, g.host, g.pid, g.since, g.start, g.boot, l.renewed
            FROM vm_guards g LEFT JOIN owner_leases l ON l.host = g.host AND l.pid = g.pid AND l.start = g.start WHERE g.vm_id = @vm;
            """, tx, [("@vm", vmId)]))
        using (var r = cmd.ExecuteReader())
        {
            if (r.Read())
            {
                var (holder, holderWhat, host, pid, since) = (r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4));
                var (start, boot, lease) = (r.IsDBNull(5) ? 0 : r.GetInt64(5), r.IsDBNull(6) ? null : r.GetString(6), r.IsDBNull(7) ? (DateTimeOffset?)null : Moment(r.GetString(7)));
                // A guard of a process that died is stale: the cleanup pass deals with its leftovers.
                if (GuardHolderMayBeAlive(host, pid, start, boot, lease))
                    throw new VmBusyException($"VM {vmId} is busy with {holderWhat} job {holder} (since {since}); retry when it has finished.");
            }
        }
        var owner = ProcessOwner.Current;
        Execute(c, """
            INSERT INTO vm_guards (vm_id, job_id, what, host, pid, since, start, boot) VALUES (@vm, @job, @what, @host, @pid, @since, @start, @boot)
            ON CONFLICT (vm_id) DO UPDATE SET job_id = excluded.job_id, what = excluded.what, host = excluded.host, pid = excluded.pid,
                since = excluded.since, start = excluded.start, boot = excluded.boot;
            """, tx,
            ("@vm", vmId), ("@job", jobId), ("@what", what), ("@host", owner.Host), ("@pid", owner.Pid), ("@since", _time.GetUtcNow().ToString("u", CultureInfo.InvariantCulture)),
            ("@start", owner.StartTicks), ("@boot", ProcessOwner.BootId));
        tx.Commit();
        return new Release(this, vmId, jobId);
    }

    /// <summary>
    /// Under this machine's running kernel (same boot id) the guard's process is looked up by pid and
    /// start time. Elsewhere its lease decides when it has one: proxies sharing a catalog, cloned from
    /// one image, share a host name too. Without a lease, a guard of this host name from another boot
    /// is of a machine that rebooted since (or a new proxy VM on the same catalog disk): its process is
    /// gone; a guard of another host counts as held. A row of an older version (no boot) is judged by
    /// its pid alone, as that version did.
    /// </summary>
    private bool GuardHolderMayBeAlive(string host, int pid, long start, string? boot, DateTimeOffset? lease) =>
        ProcessOwner.RunsHere(pid, start, boot, pidNamespace: null)
        ?? (lease is { } renewed ? _time.GetUtcNow() - renewed < ProcessOwner.Lease : host != Environment.MachineName || (boot is null && ProcessOwner.IsRunning(pid, 0)));

    private sealed class Release(SqlCatalog catalog, int vmId, string jobId) : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            using var c = catalog.Open();
            Execute(c, "DELETE FROM vm_guards WHERE vm_id = @vm AND job_id = @job;", null, ("@vm", vmId), ("@job", jobId));
        }
    }
}
