! Fortran 2008 binding of the multiscale surrogate C API (multiscale/surrogate/c_api.h,
! library libmultiscale_surrogate): evaluate a learned effective SDE dX = b(X) dt + S(X) dW
! exported with multiscale.export.export_surrogate(model, path).
!
! Two layers:
!   * ms_surrogate_*  : the raw bind(C) interfaces, one per C function, same names and arguments.
!   * surrogate_*     : friendly wrappers over a derived type surrogate_t (also type-bound:
!                       call s%open(path, ierr), s%drift(x, -1, b, ierr), ...).
!
! Array layout
!   A batch of n states of dimension m is x(m, n) in Fortran: column-major (m, n) has exactly the
!   memory layout of the C API's row-major x[n][m], so x is passed without copying. The drift
!   b(m, n) likewise is C's out[n][m].
!   Matrices: C writes row-major out[k][i][j] = M_ij of state k. Read as a Fortran array
!   a(m, m, n) that memory is a(j, i, k) = M_ij, i.e. each matrix transposed. The wrappers
!   transpose every matrix back, so they return a(i, j, k) = M_ij. For the diffusion A = S S^T
!   (symmetric) this changes nothing; for the noise factor S (lower-triangular Cholesky factor)
!   it does: surrogate_noise returns s(i, j, k) = S_ij, lower-triangular (s(i, j, k) = 0 for
!   j > i), and an Euler-Maruyama increment is matmul(s(:, :, k), dw) with dw ~ N(0, dt I).
!   Code calling the raw ms_surrogate_noise must transpose itself.
!
! member = -1 selects the ensemble mean (mean drift, mean A, Cholesky factor of the mean A);
! 0 <= member < members selects one member (0-based, as in the C API and Python).
!
! Errors: every wrapper sets ierr = MS_SURROGATE_OK (0) on success, otherwise the C API's error
! code (MS_SURROGATE_ERR_*), MS_SURROGATE_ERR_OPEN (-1) when ms_surrogate_open returned NULL,
! or MS_SURROGATE_ERR_ARGUMENT for an argument error caught by the wrapper (surrogate not open,
! array shapes not matching dim and n). The optional errmsg receives the message in every case;
! surrogate_last_error() returns the C library's message of the last error on this thread.
!
! Ring surrogates (multiscale.LocalEffectiveSDE on K = dim sites, format version 2): drift is
! the total drift R + U, diffusion/noise the diagonal A = S^2 and its square root;
! surrogate_ring_closure returns the closure u(K, n) and the diagonal noise sigma(K, n), and
! surrogate_ring_resolved the resolved drift r(K, n) (from the program stored in the file).
! surrogate_kind tells MS_SURROGATE_KIND_SDE from MS_SURROGATE_KIND_RING.
!
! surrogate_t holds a C handle; it is not finalised automatically (copies share the handle), so
! call surrogate_close once when done. A handle may be used from several threads at once.
module multiscale_surrogate
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_associated, c_f_pointer, c_char, &
                                         c_null_char, c_int, c_int64_t, c_double, c_size_t
  implicit none
  private

  ! Error codes of c_api.h, plus the wrappers' code for a failed open.
  integer, parameter, public :: MS_SURROGATE_OK = 0
  integer, parameter, public :: MS_SURROGATE_ERR_IO = 1
  integer, parameter, public :: MS_SURROGATE_ERR_FORMAT = 2
  integer, parameter, public :: MS_SURROGATE_ERR_VERSION = 3
  integer, parameter, public :: MS_SURROGATE_ERR_ARGUMENT = 4
  integer, parameter, public :: MS_SURROGATE_ERR_NUMERIC = 5
  integer, parameter, public :: MS_SURROGATE_ERR_OPEN = -1
  integer, parameter, public :: MS_SURROGATE_KIND_SDE = 0
  integer, parameter, public :: MS_SURROGATE_KIND_RING = 1

  ! Raw C API.
  public :: ms_surrogate_open, ms_surrogate_close, ms_surrogate_dim, ms_surrogate_members, &
            ms_surrogate_name, ms_surrogate_drift, ms_surrogate_diffusion, ms_surrogate_noise, &
            ms_surrogate_last_error, ms_surrogate_format_version, ms_surrogate_kind, &
            ms_surrogate_stencil, ms_surrogate_has_resolved, ms_surrogate_ring_closure, &
            ms_surrogate_ring_resolved
  ! Wrappers.
  public :: surrogate_t, surrogate_open, surrogate_close, surrogate_is_open, surrogate_dim, &
            surrogate_members, surrogate_name, surrogate_drift, surrogate_diffusion, &
            surrogate_noise, surrogate_last_error, surrogate_format_version, surrogate_kind, &
            surrogate_stencil, surrogate_has_resolved, surrogate_ring_closure, surrogate_ring_resolved

  !> An open surrogate (the C handle). Default-initialised to "not open".
  type :: surrogate_t
    type(c_ptr) :: handle = c_null_ptr
  contains
    procedure :: open => surrogate_open
    procedure :: close => surrogate_close
    procedure :: is_open => surrogate_is_open
    procedure :: dim => surrogate_dim
    procedure :: members => surrogate_members
    procedure :: name => surrogate_name
    procedure :: drift => surrogate_drift
    procedure :: diffusion => surrogate_diffusion
    procedure :: noise => surrogate_noise
    procedure :: kind => surrogate_kind
    procedure :: stencil => surrogate_stencil
    procedure :: has_resolved => surrogate_has_resolved
    procedure :: ring_closure => surrogate_ring_closure
    procedure :: ring_resolved => surrogate_ring_resolved
  end type surrogate_t

  interface
    !> ms_surrogate* ms_surrogate_open(const char* path); path must be NUL-terminated.
    function ms_surrogate_open(path) bind(C, name="ms_surrogate_open") result(h)
      import :: c_ptr, c_char
      character(kind=c_char), dimension(*), intent(in) :: path
      type(c_ptr) :: h
    end function ms_surrogate_open

    !> void ms_surrogate_close(ms_surrogate* s)
    subroutine ms_surrogate_close(h) bind(C, name="ms_surrogate_close")
      import :: c_ptr
      type(c_ptr), value :: h
    end subroutine ms_surrogate_close

    !> int ms_surrogate_dim(const ms_surrogate* s)
    function ms_surrogate_dim(h) bind(C, name="ms_surrogate_dim") result(d)
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: d
    end function ms_surrogate_dim

    !> int ms_surrogate_members(const ms_surrogate* s)
    function ms_surrogate_members(h) bind(C, name="ms_surrogate_members") result(e)
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: e
    end function ms_surrogate_members

    !> const char* ms_surrogate_name(const ms_surrogate* s, int i); 0 <= i < dim, or NULL.
    function ms_surrogate_name(h, i) bind(C, name="ms_surrogate_name") result(p)
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int), value :: i
      type(c_ptr) :: p
    end function ms_surrogate_name

    !> int ms_surrogate_drift(const ms_surrogate* s, const double* x, int64_t n, int member,
    !>                        double* out); x is C (n, dim), out C (n, dim).
    function ms_surrogate_drift(h, x, n, member, out) bind(C, name="ms_surrogate_drift") result(rc)
      import :: c_ptr, c_int, c_int64_t, c_double
      type(c_ptr), value :: h
      real(c_double), dimension(*), intent(in) :: x
      integer(c_int64_t), value :: n
      integer(c_int), value :: member
      real(c_double), dimension(*), intent(inout) :: out
      integer(c_int) :: rc
    end function ms_surrogate_drift

    !> int ms_surrogate_diffusion(...); out is C (n, dim, dim).
    function ms_surrogate_diffusion(h, x, n, member, out) bind(C, name="ms_surrogate_diffusion") &
        result(rc)
      import :: c_ptr, c_int, c_int64_t, c_double
      type(c_ptr), value :: h
      real(c_double), dimension(*), intent(in) :: x
      integer(c_int64_t), value :: n
      integer(c_int), value :: member
      real(c_double), dimension(*), intent(inout) :: out
      integer(c_int) :: rc
    end function ms_surrogate_diffusion

    !> int ms_surrogate_noise(...); out is C (n, dim, dim), row-major lower-triangular factors.
    function ms_surrogate_noise(h, x, n, member, out) bind(C, name="ms_surrogate_noise") result(rc)
      import :: c_ptr, c_int, c_int64_t, c_double
      type(c_ptr), value :: h
      real(c_double), dimension(*), intent(in) :: x
      integer(c_int64_t), value :: n
      integer(c_int), value :: member
      real(c_double), dimension(*), intent(inout) :: out
      integer(c_int) :: rc
    end function ms_surrogate_noise

    !> const char* ms_surrogate_last_error(void)
    function ms_surrogate_last_error() bind(C, name="ms_surrogate_last_error") result(p)
      import :: c_ptr
      type(c_ptr) :: p
    end function ms_surrogate_last_error

    !> int ms_surrogate_format_version(void)
    function ms_surrogate_format_version() bind(C, name="ms_surrogate_format_version") result(v)
      import :: c_int
      integer(c_int) :: v
    end function ms_surrogate_format_version

    !> int ms_surrogate_kind(const ms_surrogate* s): MS_SURROGATE_KIND_SDE or _RING, -1 for NULL.
    function ms_surrogate_kind(h) bind(C, name="ms_surrogate_kind") result(k)
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: k
    end function ms_surrogate_kind

    !> int ms_surrogate_stencil(const ms_surrogate* s): ring stencil half-width, -1 otherwise.
    function ms_surrogate_stencil(h) bind(C, name="ms_surrogate_stencil") result(k)
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: k
    end function ms_surrogate_stencil

    !> int ms_surrogate_has_resolved(const ms_surrogate* s): 1 if the file holds R, 0 if not.
    function ms_surrogate_has_resolved(h) bind(C, name="ms_surrogate_has_resolved") result(k)
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: k
    end function ms_surrogate_has_resolved

    !> int ms_surrogate_ring_closure(const ms_surrogate* s, const double* x, int64_t n, int member,
    !>                               double* u, double* sigma); x, u, sigma are C (n, K).
    function ms_surrogate_ring_closure(h, x, n, member, u, sigma) bind(C, name="ms_surrogate_ring_closure") &
        result(rc)
      import :: c_ptr, c_int, c_int64_t, c_double
      type(c_ptr), value :: h
      real(c_double), dimension(*), intent(in) :: x
      integer(c_int64_t), value :: n
      integer(c_int), value :: member
      real(c_double), dimension(*), intent(inout) :: u, sigma
      integer(c_int) :: rc
    end function ms_surrogate_ring_closure

    !> int ms_surrogate_ring_resolved(const ms_surrogate* s, const double* x, int64_t n, double* r)
    function ms_surrogate_ring_resolved(h, x, n, r) bind(C, name="ms_surrogate_ring_resolved") result(rc)
      import :: c_ptr, c_int64_t, c_double, c_int
      type(c_ptr), value :: h
      real(c_double), dimension(*), intent(in) :: x
      integer(c_int64_t), value :: n
      real(c_double), dimension(*), intent(inout) :: r
      integer(c_int) :: rc
    end function ms_surrogate_ring_resolved

    ! size_t strlen(const char*), from the C library, to convert C strings.
    function c_strlen(p) bind(C, name="strlen") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: p
      integer(c_size_t) :: n
    end function c_strlen
  end interface

contains

  !> A NUL-terminated C string as a Fortran string ("" for NULL).
  function c_string(p) result(str)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: str
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    if (.not. c_associated(p)) then
      str = ""
      return
    end if
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate (character(len=n) :: str)
    do i = 1, n
      str(i:i) = chars(i)
    end do
  end function c_string

  !> The C library's message for the last error on the calling thread ("" if none).
  function surrogate_last_error() result(msg)
    character(len=:), allocatable :: msg
    msg = c_string(ms_surrogate_last_error())
  end function surrogate_last_error

  !> Format version the C library reads.
  integer function surrogate_format_version()
    surrogate_format_version = int(ms_surrogate_format_version())
  end function surrogate_format_version

  ! Note: the optional errmsg arguments are only ever assigned, never passed on to another
  ! optional dummy: gfortran 12 mishandles an optional deferred-length character dummy passed on
  ! to another optional deferred-length dummy (the message is lost, or the program aborts).

  !> Open a portable surrogate file (trailing blanks of path are ignored). A surrogate already
  !> open in s is closed first. ierr = 0 on success, MS_SURROGATE_ERR_OPEN on failure with the
  !> library's message (which names the problem: missing file, truncated, corrupted, version) in
  !> errmsg and surrogate_last_error().
  subroutine surrogate_open(s, path, ierr, errmsg)
    class(surrogate_t), intent(inout) :: s
    character(len=*), intent(in) :: path
    integer, intent(out) :: ierr
    character(len=:), allocatable, intent(out), optional :: errmsg
    call surrogate_close(s)
    s%handle = ms_surrogate_open(trim(path) // c_null_char)
    if (c_associated(s%handle)) then
      ierr = MS_SURROGATE_OK
      if (present(errmsg)) errmsg = ""
    else
      ierr = MS_SURROGATE_ERR_OPEN
      if (present(errmsg)) errmsg = surrogate_last_error()
    end if
  end subroutine surrogate_open

  !> Release the surrogate (no-op when not open).
  subroutine surrogate_close(s)
    class(surrogate_t), intent(inout) :: s
    if (c_associated(s%handle)) call ms_surrogate_close(s%handle)
    s%handle = c_null_ptr
  end subroutine surrogate_close

  logical function surrogate_is_open(s)
    class(surrogate_t), intent(in) :: s
    surrogate_is_open = c_associated(s%handle)
  end function surrogate_is_open

  !> Number of slow variables m (0 when not open).
  integer function surrogate_dim(s)
    class(surrogate_t), intent(in) :: s
    surrogate_dim = 0
    if (c_associated(s%handle)) surrogate_dim = int(ms_surrogate_dim(s%handle))
  end function surrogate_dim

  !> Number of ensemble members (0 when not open).
  integer function surrogate_members(s)
    class(surrogate_t), intent(in) :: s
    surrogate_members = 0
    if (c_associated(s%handle)) surrogate_members = int(ms_surrogate_members(s%handle))
  end function surrogate_members

  !> Name of slow variable i, 1-based (1 <= i <= dim); "" when out of range or not open.
  function surrogate_name(s, i) result(name)
    class(surrogate_t), intent(in) :: s
    integer, intent(in) :: i
    character(len=:), allocatable :: name
    name = ""
    if (c_associated(s%handle)) name = c_string(ms_surrogate_name(s%handle, int(i - 1, c_int)))
  end function surrogate_name

  !> Check that s is open, x is (dim, n) and the output array has the shape want_shape.
  subroutine check_args(s, x, out_shape, want_shape, ierr, msg)
    class(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    integer, intent(in) :: out_shape(:), want_shape(:)
    integer, intent(out) :: ierr
    character(len=:), allocatable, intent(out) :: msg
    character(len=200) :: buf
    integer :: m
    ierr = MS_SURROGATE_OK
    msg = ""
    if (.not. c_associated(s%handle)) then
      ierr = MS_SURROGATE_ERR_ARGUMENT
      msg = "the surrogate is not open"
      return
    end if
    m = int(ms_surrogate_dim(s%handle))
    if (size(x, 1) /= m) then
      write (buf, '(a, i0, a, i0, a)') "x has ", size(x, 1), " rows but the surrogate has dim ", m, &
        " (x must be (dim, n))"
      ierr = MS_SURROGATE_ERR_ARGUMENT
      msg = trim(buf)
      return
    end if
    if (size(out_shape) /= size(want_shape) .or. any(out_shape /= want_shape)) then
      write (buf, '(a, *(1x, i0))') "output array has the wrong shape; expected", want_shape
      ierr = MS_SURROGATE_ERR_ARGUMENT
      msg = trim(buf)
    end if
  end subroutine check_args

  !> ierr and message from a C API return code.
  subroutine finish(rc, ierr, msg)
    integer(c_int), intent(in) :: rc
    integer, intent(out) :: ierr
    character(len=:), allocatable, intent(out) :: msg
    ierr = int(rc)
    msg = ""
    if (ierr /= MS_SURROGATE_OK) msg = surrogate_last_error()
  end subroutine finish

  !> Drift b(dim, n) at the states x(dim, n) (column k is one state).
  subroutine surrogate_drift(s, x, member, b, ierr, errmsg)
    class(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    integer, intent(in) :: member
    real(c_double), intent(inout) :: b(:, :)
    integer, intent(out) :: ierr
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    call check_args(s, x, shape(b), [size(x, 1), size(x, 2)], ierr, msg)
    if (ierr == 0) &
      call finish(ms_surrogate_drift(s%handle, x, int(size(x, 2), c_int64_t), int(member, c_int), b), &
                  ierr, msg)
    if (present(errmsg)) errmsg = msg
  end subroutine surrogate_drift

  !> Diffusion matrices a(dim, dim, n) with a(i, j, k) = A_ij(x(:, k)), A = S S^T (symmetric).
  subroutine surrogate_diffusion(s, x, member, a, ierr, errmsg)
    class(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    integer, intent(in) :: member
    real(c_double), intent(inout) :: a(:, :, :)
    integer, intent(out) :: ierr
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    call check_args(s, x, shape(a), [size(x, 1), size(x, 1), size(x, 2)], ierr, msg)
    if (ierr == 0) &
      call finish(ms_surrogate_diffusion(s%handle, x, int(size(x, 2), c_int64_t), int(member, c_int), a), &
                  ierr, msg)
    if (ierr == 0) call transpose_each(a)  ! a no-op up to rounding: A is symmetric
    if (present(errmsg)) errmsg = msg
  end subroutine surrogate_diffusion

  !> Noise factors q(dim, dim, n) with q(i, j, k) = S_ij(x(:, k)): lower-triangular Cholesky
  !> factors (q(i, j, k) = 0 for j > i), S S^T = A. The C API's row-major output is transposed.
  subroutine surrogate_noise(s, x, member, q, ierr, errmsg)
    class(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    integer, intent(in) :: member
    real(c_double), intent(inout) :: q(:, :, :)
    integer, intent(out) :: ierr
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    call check_args(s, x, shape(q), [size(x, 1), size(x, 1), size(x, 2)], ierr, msg)
    if (ierr == 0) &
      call finish(ms_surrogate_noise(s%handle, x, int(size(x, 2), c_int64_t), int(member, c_int), q), &
                  ierr, msg)
    if (ierr == 0) call transpose_each(q)
    if (present(errmsg)) errmsg = msg
  end subroutine surrogate_noise

  !> MS_SURROGATE_KIND_SDE or MS_SURROGATE_KIND_RING (-1 when not open).
  integer function surrogate_kind(s)
    class(surrogate_t), intent(in) :: s
    surrogate_kind = -1
    if (c_associated(s%handle)) surrogate_kind = int(ms_surrogate_kind(s%handle))
  end function surrogate_kind

  !> Ring stencil half-width s (site k sees k-s .. k+s); -1 when not a ring or not open.
  integer function surrogate_stencil(s)
    class(surrogate_t), intent(in) :: s
    surrogate_stencil = -1
    if (c_associated(s%handle)) surrogate_stencil = int(ms_surrogate_stencil(s%handle))
  end function surrogate_stencil

  !> Whether the file holds the resolved drift R (false when not open).
  logical function surrogate_has_resolved(s)
    class(surrogate_t), intent(in) :: s
    surrogate_has_resolved = .false.
    if (c_associated(s%handle)) surrogate_has_resolved = ms_surrogate_has_resolved(s%handle) == 1
  end function surrogate_has_resolved

  !> Ring surrogates: closure u(K, n) and diagonal noise sigma(K, n) at the ring states x(K, n)
  !> (member -1: the mean u and sigma = sqrt(mean sigma^2)).
  subroutine surrogate_ring_closure(s, x, member, u, sigma, ierr, errmsg)
    class(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    integer, intent(in) :: member
    real(c_double), intent(inout) :: u(:, :), sigma(:, :)
    integer, intent(out) :: ierr
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    call check_args(s, x, [shape(u), shape(sigma)], [size(x, 1), size(x, 2), size(x, 1), size(x, 2)], ierr, msg)
    if (ierr == 0) &
      call finish(ms_surrogate_ring_closure(s%handle, x, int(size(x, 2), c_int64_t), int(member, c_int), u, &
                                            sigma), ierr, msg)
    if (present(errmsg)) errmsg = msg
  end subroutine surrogate_ring_closure

  !> Ring surrogates: resolved drift r(K, n) at the ring states x(K, n) (zeros without one).
  subroutine surrogate_ring_resolved(s, x, r, ierr, errmsg)
    class(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    real(c_double), intent(inout) :: r(:, :)
    integer, intent(out) :: ierr
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    call check_args(s, x, shape(r), [size(x, 1), size(x, 2)], ierr, msg)
    if (ierr == 0) call finish(ms_surrogate_ring_resolved(s%handle, x, int(size(x, 2), c_int64_t), r), ierr, msg)
    if (present(errmsg)) errmsg = msg
  end subroutine surrogate_ring_resolved

  !> Transpose every matrix a(:, :, k) in place (C row-major <-> Fortran column-major).
  subroutine transpose_each(a)
    real(c_double), intent(inout) :: a(:, :, :)
    integer :: k
    do k = 1, size(a, 3)
      a(:, :, k) = transpose(a(:, :, k))
    end do
  end subroutine transpose_each

end module multiscale_surrogate
