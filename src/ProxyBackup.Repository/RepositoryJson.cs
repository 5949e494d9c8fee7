using System.Text.Json;
using System.Text.Json.Serialization;

namespace ProxyBackup.Repository;

/// <summary>
/// The repository's JSON files (docs/repository-format.md), read and written by generated code:
/// reflection-based serialization built its accessors at run time, about 40 ms of every CLI backup's
/// start, however small the disk.
/// </summary>
[JsonSerializable(typeof(RepositoryConfig))]
[JsonSerializable(typeof(RepositoryLock.LockInfo))]
[JsonSerializable(typeof(RestorePoint))]
[JsonSerializable(typeof(VerifyState))]
[JsonSerializable(typeof(MasterKeys.KeyFileJson))]
internal sealed partial class RepositoryJson : JsonSerializerContext
{
    /// <summary>The config is the one file an operator reads by hand: indented.</summary>
    public static RepositoryJson Indented { get; } = new(new JsonSerializerOptions { WriteIndented = true });
}
