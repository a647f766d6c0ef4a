! Fortran 2008 binding of the multiscale surrogate C API (multiscale/surrogate/c_api.h).
!
! Layout: a batch of n states of dimension m is x(m, n) in Fortran (column-major), which is the
! C API's row-major (n, m). Matrices come back as a(m, m, n) with a(i, j, k) = A_ij of state k
! (the C API writes row-major (n, m, m); the wrappers transpose each matrix).
! member = -1 selects the ensemble mean, 0 <= member < members one member.
module multiscale_surrogate
  use, intrinsic :: iso_c_binding
  implicit none
  private
  public :: surrogate_t, surrogate_open, surrogate_close, surrogate_dim, surrogate_members, &
            surrogate_drift, surrogate_diffusion, surrogate_noise, surrogate_last_error

  type :: surrogate_t
    type(c_ptr) :: handle = c_null_ptr
  end type surrogate_t

  interface
    function c_open(path) bind(C, name="ms_surrogate_open") result(h)
      import :: c_ptr, c_char
      character(kind=c_char), dimension(*), intent(in) :: path
      type(c_ptr) :: h
    end function c_open
    subroutine c_close(h) bind(C, name="ms_surrogate_close")
      import :: c_ptr
      type(c_ptr), value :: h
    end subroutine c_close
    function c_dim(h) bind(C, name="ms_surrogate_dim") result(d)
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: d
    end function c_dim
    function c_members(h) bind(C, name="ms_surrogate_members") result(d)
      import :: c_ptr, c_int
      type(c_ptr), value :: h
      integer(c_int) :: d
    end function c_members
    function c_eval(h, x, n, member, out) bind(C) result(rc)
      import :: c_ptr, c_int, c_int64_t, c_double
      type(c_ptr), value :: h
      real(c_double), dimension(*), intent(in) :: x
      integer(c_int64_t), value :: n
      integer(c_int), value :: member
      real(c_double), dimension(*), intent(out) :: out
      integer(c_int) :: rc
    end function c_eval
    function c_last_error() bind(C, name="ms_surrogate_last_error") result(p)
      import :: c_ptr
      type(c_ptr) :: p
    end function c_last_error
    function c_strlen(p) bind(C, name="strlen") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: p
      integer(c_size_t) :: n
    end function c_strlen
  end interface

  ! The three evaluation functions share c_eval's signature.
  procedure(c_eval), bind(C, name="ms_surrogate_drift") :: c_drift
  procedure(c_eval), bind(C, name="ms_surrogate_diffusion") :: c_diffusion
  procedure(c_eval), bind(C, name="ms_surrogate_noise") :: c_noise

contains

  !> Open a portable surrogate file; ierr /= 0 on failure (message from surrogate_last_error()).
  subroutine surrogate_open(s, path, ierr)
    type(surrogate_t), intent(out) :: s
    character(len=*), intent(in) :: path
    integer, intent(out) :: ierr
    s%handle = c_open(trim(path) // c_null_char)
    ierr = merge(0, 1, c_associated(s%handle))
  end subroutine surrogate_open

  subroutine surrogate_close(s)
    type(surrogate_t), intent(inout) :: s
    if (c_associated(s%handle)) call c_close(s%handle)
    s%handle = c_null_ptr
  end subroutine surrogate_close

  integer function surrogate_dim(s)
    type(surrogate_t), intent(in) :: s
    surrogate_dim = int(c_dim(s%handle))
  end function surrogate_dim

  integer function surrogate_members(s)
    type(surrogate_t), intent(in) :: s
    surrogate_members = int(c_members(s%handle))
  end function surrogate_members

  !> Drift b(m, n) at states x(m, n).
  subroutine surrogate_drift(s, x, member, b, ierr)
    type(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    integer, intent(in) :: member
    real(c_double), intent(out) :: b(:, :)
    integer, intent(out) :: ierr
    ierr = int(c_drift(s%handle, x, int(size(x, 2), c_int64_t), int(member, c_int), b))
  end subroutine surrogate_drift

  !> Diffusion matrices a(m, m, n), a(i, j, k) = A_ij(x(:, k)).
  subroutine surrogate_diffusion(s, x, member, a, ierr)
    type(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    integer, intent(in) :: member
    real(c_double), intent(out) :: a(:, :, :)
    integer, intent(out) :: ierr
    ierr = int(c_diffusion(s%handle, x, int(size(x, 2), c_int64_t), int(member, c_int), a))
    if (ierr == 0) call transpose_each(a)
  end subroutine surrogate_diffusion

  !> Lower-triangular noise factors q(m, m, n) with q q^T = A, q(i, j, k) = S_ij(x(:, k)).
  subroutine surrogate_noise(s, x, member, q, ierr)
    type(surrogate_t), intent(in) :: s
    real(c_double), intent(in) :: x(:, :)
    integer, intent(in) :: member
    real(c_double), intent(out) :: q(:, :, :)
    integer, intent(out) :: ierr
    ierr = int(c_noise(s%handle, x, int(size(x, 2), c_int64_t), int(member, c_int), q))
    if (ierr == 0) call transpose_each(q)
  end subroutine surrogate_noise

  !> The C library's message for the last error on this thread.
  function surrogate_last_error() result(msg)
    character(len=:), allocatable :: msg
    type(c_ptr) :: p
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    p = c_last_error()
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: msg)
    do i = 1, n
      msg(i:i) = chars(i)
    end do
  end function surrogate_last_error

  subroutine transpose_each(a)
    real(c_double), intent(inout) :: a(:, :, :)
    integer :: k
    do k = 1, size(a, 3)
      a(:, :, k) = transpose(a(:, :, k))
    end do
  end subroutine transpose_each

end module multiscale_surrogate
